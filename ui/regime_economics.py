"""The Economics page's decode and training sections: what saved decode steps cost per million
generated tokens (beside their bandwidth floor) and what saved training steps cost per million
training tokens of one attention layer. Where none is saved, a section says how to make one and
offers a quick measurement in the worker (ui.follow, attn.tasks.profile_task in that mode);
it never shows a number that was not measured."""
from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import pandas as pd
import streamlit as st

from attn import charts, variants
from attn.regime_costs import DecodeCost, TrainCost
from attn.regimes import decode_spec
from attn.spec import AttentionSpec
from ui import follow, results
from ui import format as fmt
from ui.errors import shown_as_error
from ui.plot import show

# an exact fused kernel, a window and a recurrent state: three ways a step's cost grows with context
QUICK_VARIANTS = ("sdpa", "sliding_window", "linear")
QUICK = {"decode": "ec_quick_decode_jobs", "train": "ec_quick_train_jobs"}  # keys of ui.follow
QUICK_BUDGET_S = 0.2


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4g}"


def _joules(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g} J"


def _shape(costs: Sequence[DecodeCost | TrainCost], key: str) -> list:
    """The costs of one shape: the only one, or the one chosen in a select box."""
    shapes = pd.Series([c.shape for c in costs]).value_counts()
    if len(shapes) == 1:
        return list(costs)
    shape = st.selectbox("shape (batch, heads, head_dim, dtype)", list(shapes.index), key=key,
                         help="one line per variant needs the same shape at every length")
    return [c for c in costs if c.shape == shape]


def _notes(costs: Sequence[DecodeCost | TrainCost]) -> None:
    notes = sorted({c.energy_note for c in costs if c.energy_note})
    if notes:
        st.caption("J/Mtok —: " + "; ".join(notes) + ".")


def decode_section(costs: list[DecodeCost], device: str | None, spec: AttentionSpec | None) -> None:
    """Saved decode steps on `device`, priced; or how to make one."""
    mine = _section("decode", "Decode: per generated token", costs, device, spec,
                    "One decode step of new tokens for each sequence of the batch against its KV cache, for "
                    "the attention core of one layer: $/Mtok = price per second × step ÷ (batch × new tokens) "
                    "× 10⁶. Beside it, the same price at the step's bandwidth floor (bytes read ÷ the copy "
                    "bandwidth calibrated on the device it ran on): what the step would cost if it did nothing "
                    "but read its cache at full bandwidth. The memory-bound model below prices a whole model's cache the same "
                    "way.")
    if not mine:
        return
    table = pd.DataFrame([{
        "variant": c.variant, "shape": c.shape, "context": f"{c.context:,}", "new tokens": c.new_tokens,
        "step": fmt.ms(c.step_ms), "per token": fmt.ms(c.per_token_ms), "$ per Mtok": _usd(c.usd_per_mtok),
        "$ per Mtok at the floor": _usd(c.floor_usd_per_mtok),
        "measured ÷ floor": "—" if not c.floor_ms else f"{c.step_ms / c.floor_ms:.3g}×",
        "J per Mtok": _joules(c.joules_per_mtok), "run": f"#{c.run_id}"} for c in mine])
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(f"At ${mine[0].price_per_hour:.2f}/h. Per token: the step ÷ new tokens, what one sequence waits "
               "for each token. " + "; ".join(sorted({c.floor_note for c in mine if c.floor_note})))
    _notes(mine)
    shown = _shape(mine, "ec_decode_shape")
    show(charts.decode_cost_chart([asdict(c) for c in shown]), key="ec_decode_chart")


def train_section(costs: list[TrainCost], device: str | None, spec: AttentionSpec | None) -> None:
    """Saved training steps on `device`, priced per training token; or how to make one."""
    mine = _section("train", "Training: per training token", costs, device, spec,
                    "One training step of one attention layer: the forward and the backward with respect to q, "
                    "k and v, timed apart. $/Mtok = price per second × (forward + backward) ÷ (batch × seq) × "
                    "10⁶; the attention core alone (no projections, MLP or optimizer).")
    if not mine:
        return
    st.dataframe(pd.DataFrame([{
        "variant": c.variant, "shape": c.shape, "seq": f"{c.seq:,}", "tokens per step": f"{c.tokens:,}",
        "forward": fmt.ms(c.forward_ms), "backward": fmt.ms(c.backward_ms), "step": fmt.ms(c.step_ms),
        "$ per Mtok": _usd(c.usd_per_mtok), "J per Mtok": _joules(c.joules_per_mtok), "run": f"#{c.run_id}"}
        for c in mine]), hide_index=True, width="stretch")
    st.caption(f"At ${mine[0].price_per_hour:.2f}/h.")
    _notes(mine)
    shown = _shape(mine, "ec_train_shape")
    rows = [{"variant": c.variant, "seq": c.seq, "usd_per_mtok": c.usd_per_mtok} for c in shown]
    show(charts.per_token_curve(rows, "usd_per_mtok", "$ per million training tokens",
                                title="training: $ per million tokens of one attention layer"), key="ec_train_chart")


def _section(mode: str, title: str, costs: list, device: str | None, spec: AttentionSpec | None,
             caption: str) -> list:
    """The section's heading and its convention; its costs on `device`, or none after saying so."""
    st.subheader(title)
    st.caption(caption)
    mine = [c for c in costs if c.device == device]
    if not mine:
        _none_saved(mode, device, len(costs), spec)
    return mine


def _none_saved(mode: str, device: str | None, elsewhere: int, spec: AttentionSpec | None) -> None:
    """Say that no run of `mode` is saved (here), how to make one, and offer to measure a few."""
    what = "decode step" if mode == "decode" else "training step"
    where = f" on {device}" if device else ""
    other = f" ({elsewhere} on other devices: choose one above)" if device and elsewhere else ""
    cli = ("python -m attn profile --variant sdpa --mode decode --context 4096 --save" if mode == "decode"
           else "python -m attn profile --variant sdpa --mode train --seq 1024 --save")
    names = quick_variants(mode, spec)
    if spec is None:
        offer = "Fix the spec in the sidebar to measure some here."
    elif not names:
        offer = f"None of {', '.join(QUICK_VARIANTS)} can run this regime on the sidebar's spec here."
    else:
        at = f"a cache of {spec.kv_seq:,} keys (the sidebar's length)" if mode == "decode" else \
            f"the sidebar's spec (seq {spec.seq:,})"
        offer = f"Or measure {', '.join(names)} here, in the worker, on {at}."
    st.info(f"No {what} saved{where}{other}, so nothing to price: no number is shown that was not measured. "
            f"Profile one in the {mode} mode and save it, from a shell `{cli}`. {offer}")
    if names and st.button(f"Measure {what}s", key=f"ec_quick_{mode}", icon=":material/play_arrow:",
                           help="profiles run one after the other in the worker and are saved as runs"):
        with shown_as_error(f"The quick {mode} measurement"):
            follow.start(QUICK[mode], *quick_jobs(mode, spec, names))
    # below its button, after a rerun too; once the runs are saved, the page is drawn again with them
    if results.keep_all(follow.follow(QUICK[mode], f"The quick {mode} measurement")):
        st.rerun()


def quick_variants(mode: str, spec: AttentionSpec | None) -> list[str]:
    """The quick variants that can run `mode` on the sidebar's spec on this device."""
    if spec is None:
        return []
    here = results.device()
    try:
        run_spec = _spec_of(mode, spec).with_(device=here)
    except ValueError:
        return []
    return [n for n in QUICK_VARIANTS if n in variants.names() and mode not in variants.get(n).cannot
            and not variants.get(n).unsupported(run_spec, here)]


def quick_jobs(mode: str, spec: AttentionSpec, names: list[str]) -> list[follow.Job]:
    run_spec = _spec_of(mode, spec).with_(device=results.device())
    return [results.profile_job(run_spec, n, QUICK_BUDGET_S, mode=mode) for n in names]


def _spec_of(mode: str, spec: AttentionSpec) -> AttentionSpec:
    # decode: one new token against a cache as long as the sidebar's keys
    return decode_spec(spec, spec.kv_seq, 1) if mode == "decode" else spec
