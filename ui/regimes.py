"""The regime on a page (attn.regimes: forward, train, decode): its selector, and the cards that
say what a profile measured in it."""
from __future__ import annotations

import streamlit as st

from attn.cost import Cost
from attn.regimes import MODES
from ui import format as fmt
from ui.results import cost_cards, error_cards, metric_cards, not_profiled, profile_caption
from ui.state import current_mode, set_mode

HELP = ("forward: one call over the whole sequence (a prefill, an encoder). train: forward and "
        "backward with respect to q, k and v. decode: one serving step, the new tokens' queries "
        "against a cache of context keys; memory-bound, so its floor is the bytes it reads over "
        "this device's copy bandwidth.")


def mode_selector(key: str) -> str:
    """The regime radio of a page (its own widget key), bound to the session's regime, which the
    sidebar reads before the page runs: a change is kept by the callback, before the rerun."""
    note = st.session_state.pop("mode_note", None)
    if note:
        st.warning(note)
    st.radio("regime", MODES, index=MODES.index(current_mode()), key=key, horizontal=True,
             help=HELP, on_change=_keep, args=(key,))
    return current_mode()


def _keep(key: str) -> None:
    set_mode(st.session_state[key])


def regime_cards(cost: Cost, prof: dict | None, mode: str, per_row: int = 3) -> None:
    """The cost cards of a regime: analytic ones always, measured ones once profiled."""
    if mode == "train":
        train_cards(cost, prof, per_row)
    elif mode == "decode":
        decode_cards(cost, prof, per_row)
    else:
        cost_cards(cost, prof, per_row)


def train_cards(cost: Cost, prof: dict | None, per_row: int = 3) -> None:
    executed = (f"; executed {fmt.si(cost.flops_executed)} (the backward recomputes the scores)"
                if cost.flops_executed else "")
    metric_cards([
        ("useful FLOPs", fmt.si(cost.flops), cost.flops_convention + executed),
        ("est. saved", fmt.nbytes(cost.saved_bytes),
         "what the forward keeps for the backward beyond q, k and v, analytic"),
        ("est. step peak", fmt.nbytes(cost.step_bytes),
         "one step's allocation above its inputs and dO: the forward's peak or the backward's "
         "(what was saved, its workspace and dq, dk, dv), analytic"),
    ], per_row)
    if prof is None:
        not_profiled()
        return
    metric_cards([
        ("forward (median)", fmt.ms(prof["forward_ms"]),
         f"p10 {fmt.ms(prof['forward_p10_ms'])} · p90 {fmt.ms(prof['forward_p90_ms'])} · "
         f"{prof['repeats']} repeats · {prof['timing_method']}"),
        ("backward (median)", fmt.ms(prof["backward_ms"]),
         f"p10 {fmt.ms(prof['backward_p10_ms'])} · p90 {fmt.ms(prof['backward_p90_ms'])}: dq, dk and "
         "dv for a seeded upstream gradient"),
        ("saved memory", fmt.nbytes(prof["saved_bytes"]),
         "what autograd kept for the backward during one forward, beyond the inputs (counted with "
         "saved-tensor hooks): eager attention keeps the weights, S×S per head; a fused kernel "
         "its output and a log-sum-exp per row"),
        ("gradient error", fmt.ratio(prof["grad_error"]),
         "the largest of ‖dq − ref‖/‖ref‖, dk, dv against float64 autograd of this variant's own math"),
        ("step peak memory", fmt.nbytes(prof["peak_bytes"]),
         f"allocated during forward + backward above the inputs and dO · {prof['memory_method']}"),
        ("achieved FLOP/s", fmt.si(prof["achieved_tflops"] * 1e12),
         "useful FLOPs of forward + backward over the two medians together"),
        *error_cards(prof),
    ], per_row)
    st.caption(profile_caption(prof))


def decode_cards(cost: Cost, prof: dict | None, per_row: int = 3) -> None:
    read_what = (f"{cost.cached_keys:,} cached keys and their values" if cost.cached_keys
                 else "the recurrent state and the new tokens' keys and values")
    metric_cards([
        ("bytes read", fmt.nbytes(cost.bytes_read),
         f"one step reads {read_what}, and the new queries: counted from the cache's layout, not "
         "measured"),
        ("useful FLOPs", fmt.si(cost.flops), cost.flops_convention),
        ("cache per token", fmt.nbytes(cost.kv_cache_bytes_per_token),
         "keys and values kept per token and layer: 2·kv_heads·head_dim·bytes"),
    ], per_row)
    if prof is None:
        not_profiled()
        return
    floor, latency = prof.get("floor_ms"), prof["latency_ms"]
    share = 100.0 * floor / latency if floor and latency else None
    metric_cards([
        ("per-token latency", fmt.ms(prof["per_token_ms"]),
         f"the step's median over its {prof['new_tokens']} new token(s)"),
        ("step latency (median)", fmt.ms(latency),
         f"p10 {fmt.ms(prof['p10_ms'])} · p90 {fmt.ms(prof['p90_ms'])} · {prof['repeats']} repeats "
         f"· {prof['timing_method']}; the cache is laid out before, as a server keeps it"),
        ("% of floor speed", fmt.pct(share),
         f"floor ÷ latency: reading {fmt.nbytes(prof['bytes_read'])} at this device's calibrated copy "
         f"bandwidth takes {fmt.ms(floor)}; 100% is a step as fast as its bytes can be read from "
         "memory" if floor else "the floor needs this device's copy bandwidth (calibrate it on the "
         "Overview)"),
        ("achieved bandwidth", f"{prof['achieved_gbps']:.3g} GB/s" if prof.get("achieved_gbps") else "—",
         "bytes read ÷ the step's median latency"),
        ("peak memory", fmt.nbytes(prof["peak_bytes"]),
         f"allocated during one step above the cache and the queries · {prof['memory_method']}"),
        *error_cards(prof),
    ], per_row)
    if share and share > 100:
        st.caption(f"Faster than the floor: the step read its {fmt.nbytes(prof['bytes_read'])} faster "
                   "than the measured copy bandwidth, as happens when they stay in the processor's "
                   "caches between repeats (a GPU's L2 is flushed before each step; a CPU's caches "
                   "are not).")
    st.caption(profile_caption(prof))
