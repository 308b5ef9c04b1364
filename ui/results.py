"""Cached work behind the pages: maps, profiles and sweeps (through the job runner). Whether a
map is drawn in the page or in the worker, and its figures, are ui.maps'."""
from __future__ import annotations

import json

import streamlit as st

from attn import charts, tasks, variants
from attn.cost import Cost
from attn.maps import maps_json
from attn.profiles import roofline_intensity
from attn.sources import InputSource, input_spec
from attn.spec import AttentionSpec
from attn.sweep import analytic_curve
from ui import follow
from ui import format as fmt
from ui.sidebar import _device

PROFILE_BUDGET_S = 0.3


def device() -> str:
    return _device()["device"]


def spec_key(spec: AttentionSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


@st.cache_data(max_entries=64, show_spinner=False)
def _maps(spec_json: str, variant: str, head: int, size: int, reduce: str, temperature: float,
          source: InputSource | None, mode: str = "forward") -> dict:
    return maps_json(AttentionSpec.from_dict(json.loads(spec_json)), variant, head, size, reduce,
                     temperature, source, mode)


def maps(spec: AttentionSpec, variant: str, head: int, size: int, reduce: str, temperature: float,
         source: InputSource | None = None, mode: str = "forward") -> dict:
    return _maps(spec_key(spec), variant, head, size, reduce, temperature, source, mode)


@st.cache_data(max_entries=16, show_spinner="running the model on the text")
def _input_spec(spec_json: str, source: InputSource, mode: str) -> dict:
    return input_spec(AttentionSpec.from_dict(json.loads(spec_json)), source, mode).to_dict()


def effective_spec(spec: AttentionSpec, source: InputSource, mode: str = "forward") -> AttentionSpec:
    """The spec of the inputs: the sidebar's, or a captured layer's shape with its parameters (in
    decode: the text is the cache, and its last spec.seq tokens are the new ones)."""
    if source.kind == "random":
        return spec
    return AttentionSpec.from_dict(_input_spec(spec_key(spec), source, mode))


# the small curve under each variant: what grows in each regime, from the cost model
SMALL_CURVES = {
    "forward": ("flops", "useful FLOPs across lengths (analytic)", "seq"),
    "train": ("saved_bytes", "saved for the backward across lengths (analytic)", "seq"),
    "decode": ("bytes_read", "bytes one step reads across contexts (analytic)", "context"),
}


@st.cache_resource(max_entries=64, show_spinner=False)
def _small_curve(spec_json: str, variant: str, mode: str):
    spec = AttentionSpec.from_dict(json.loads(spec_json))
    metric, title, axis = SMALL_CURVES[mode]
    here = spec.kv_seq if axis == "context" else spec.seq
    xs = [x for x in seq_grid(here) if x >= spec.seq] if axis == "context" else seq_grid(here)
    points = [{"variant": variant, "status": "ok", **p}
              for p in analytic_curve(spec, variant, xs, axis, mode)]
    return charts.metric_curve(points, metric, title=title, current_x=here, height=260,
                               x_label="context (cached keys)" if axis == "context" else "sequence length")


def small_curve(spec: AttentionSpec, variant: str, mode: str = "forward"):
    """Forward: useful FLOPs against length; train: what the forward saves for the backward;
    decode: the bytes a step reads against the context."""
    return _small_curve(spec_key(spec), variant, mode)


def seq_grid(seq: int) -> list[int]:
    """Powers of two around the current length, for the small curves."""
    lo = max(16, 1 << max(0, seq.bit_length() - 5))
    xs, x = [], lo
    while x <= seq * 16:
        xs.append(x)
        x *= 2
    return sorted(set(xs + [seq]))


# -- profiles and sweeps in the worker -------------------------------------------------------
PROFILING = "pg_profiling"  # the Playground's profiles, under one key of the session


def _profiles() -> dict:
    return st.session_state.setdefault("profiles", {})


def cached_profile(spec: AttentionSpec, variant: str, source: InputSource | None = None,
                   mode: str = "forward") -> dict | None:
    return _profiles().get((spec_key(spec), variant, source, mode))


def profile_job(spec: AttentionSpec, name: str, budget_s: float = PROFILE_BUDGET_S,
                source: InputSource | None = None, mode: str = "forward", title: str = "") -> follow.Job:
    """Profile one variant in the worker in a regime (decode: `spec` is the step's); its tag is
    what keep() needs to save the result."""
    where = f"context {spec.kv_seq}, {spec.seq} new" if mode == "decode" else f"seq {spec.seq}"
    title = title or (f"{name} ({mode}) at {where}" if mode != "forward" else f"{name} at {where}")
    return follow.job(tasks.profile_task, spec.to_dict(), name, budget_s,
                      source.__dict__ if source else None, mode, kind="profile", title=title,
                      tag=("profile", spec, name, source, mode))


def sweep_job(spec: AttentionSpec, names: list[str], xs: list[int], axis: str, budget_s: float,
              title: str, mode: str = "forward", ray: str | None = None) -> follow.Job:
    """A sweep in the worker in a regime; it streams its points as partial items. `ray`: the
    address of a Ray cluster whose tasks measure the points (the worker is their driver)."""
    extra = () if ray is None else (ray,)  # a local sweep's job is called as it always was
    return follow.job(tasks.sweep_task, spec.to_dict(), list(names), list(xs), axis, float(budget_s),
                      mode, *extra, kind="sweep", title=title, tag=("sweep", spec, None, None, mode))


def keep(tag: tuple, result: dict) -> int | None:
    """Save the result of a profile_job or a sweep_job as a run (a profile is also kept for the
    Playground's cards); returns the run's id."""
    kind, spec, name, source, mode = tag
    if kind == "profile":
        _profiles()[(spec_key(spec), name, source, mode)] = result
        return save_run("profile", spec, result, name)
    return save_run("sweep", spec, result, ",".join(result["variants"]))


def keep_all(view: follow.JobView | None) -> list[int]:
    """keep() every result of a followed batch of profile_job and sweep_job; the new runs' ids."""
    ids = [keep(tag, result) for tag, result in view.results] if view else []
    return [run_id for run_id in ids if run_id is not None]


def cannot_run(spec: AttentionSpec, variant: str, mode: str = "forward") -> list[str]:
    """Why a variant cannot run the spec in this regime on this device, in words (none: it can).
    A regime the variant cannot run at all is the one reason given (linformer in decode), since
    the spec's own reasons (a decode step is causal) would only follow from it."""
    var = variants.get(variant)
    if mode in var.cannot:
        return [var.cannot[mode]]
    return var.unsupported(spec, device())


def profile_all(spec: AttentionSpec, names: list[str], budget_s: float = PROFILE_BUDGET_S,
                source: InputSource | None = None, mode: str = "forward") -> None:
    """Queue a profile of each variant that can run the spec; follow_profiles() shows them."""
    todo = [n for n in names if not cannot_run(spec, n, mode)]
    follow.start(PROFILING, *(profile_job(spec, n, budget_s, source, mode) for n in todo))


def profiling() -> bool:
    """Profiles that profile_all queued are still measuring."""
    view = follow.peek(PROFILING)
    return view is not None and not view.finished


def follow_profiles() -> bool:
    """Follow the profiles that profile_all queued (after a rerun too) and keep each result; True
    when they have just all ended with one (the page redraws its cards)."""
    view = follow.follow(PROFILING, "Profiling")
    keep_all(view)
    return view is not None and view.ok


def save_run(kind: str, spec: AttentionSpec | dict, result: dict, variant: str | None,
             maps: dict | None = None) -> int | None:
    from attn.runs import RunStore

    try:
        return RunStore().save(kind, spec.to_dict() if hasattr(spec, "to_dict") else spec, result,
                               variant=variant, maps=maps, environment=result.get("environment"))
    except Exception as err:  # a full disk must not cost the user the measurement on screen
        st.warning(f"the run was measured but not saved: {err}")
        return None


def metric_cards(cards: list[tuple], per_row: int) -> None:
    """st.metric cards, `per_row` to a row: (label, value, help) each."""
    for i in range(0, len(cards), per_row):
        for col, (label, value, help_text) in zip(st.columns(per_row), cards[i:i + per_row]):
            col.metric(label, value, help=help_text)


def cost_cards(cost: Cost, prof: dict | None, per_row: int = 3) -> None:
    """Analytic numbers always; measured ones once the variant was profiled."""
    metric_cards([
        ("useful FLOPs", fmt.si(cost.flops),
         "4·B·H·D per unmasked (query, key) pair; approximations: the work they do"),
        ("pairs, % of exact", f"{cost.density:.1%}", f"{cost.pairs:,} of {cost.full_pairs:,} pairs that "
         "exact attention with the same causal flag sees"),
        ("est. peak", fmt.nbytes(cost.peak_bytes),
         f"inputs + output + workspace ({fmt.nbytes(cost.extra_bytes)}), analytic"),
    ], per_row)
    if prof is None:
        not_profiled()
        return
    metric_cards([
        ("latency (median)", fmt.ms(prof["latency_ms"]),
         f"p10 {fmt.ms(prof['p10_ms'])} · p90 {fmt.ms(prof['p90_ms'])} · {prof['repeats']} repeats · "
         f"{prof['timing_method']}"),
        ("peak memory", fmt.nbytes(prof["peak_bytes"]),
         "allocated during one call above what was allocated before it: the output and the "
         f"workspace, not the inputs · {prof['memory_method']}"),
        ("achieved FLOP/s", fmt.si(prof["achieved_tflops"] * 1e12), prof["flops_note"]),
        ("% of measured roof", fmt.pct(prof.get("roofline_pct")),
         "share of min(peak matmul rate, intensity × bandwidth) measured on this device; — until "
         "the device is calibrated (Overview)"),
        *error_cards(prof),
    ], per_row)
    st.caption(profile_caption(prof))


def not_profiled() -> None:
    st.caption("Not profiled yet on this device: press :material/play_arrow: **Profile**.")


def error_cards(prof: dict) -> list[tuple]:
    """The kernel's and the approximation's error, as cards, in every regime."""
    return [
        ("kernel error", fmt.ratio(prof["kernel_error"]),
         "‖out − ref‖/‖ref‖ against this variant's own math in float64"),
        ("approx error", fmt.ratio(prof["approx_error"]),
         "‖out − full‖/‖full‖ against exact attention with the same causal flag"),
    ]


def profile_caption(prof: dict) -> str:
    """The line under a profile's cards: the backend (and why auto chose it), the spread, the
    energy, the inputs."""
    energy = (f"energy {prof['energy_j']:.3g} J/call" if prof.get("energy_j")
              else "energy: needs an NVIDIA GPU's energy counter")
    backend = prof["backend"]
    if prof.get("backend_reasons"):
        backend = f"{backend} (auto: " + "; ".join(prof["backend_reasons"].values()) + ")"
    return (f"backend: {backend} · p10–p90 {fmt.ms(prof['p10_ms'])}–{fmt.ms(prof['p90_ms'])}"
            f" · {energy}" + (f" · inputs: {prof['inputs']}" if prof.get("inputs") else ""))



def device_info() -> dict:
    return _device()


def demo_sweep(gpu: bool) -> dict:
    """A sweep that shows the quadratic wall in under a minute on this kind of device."""
    if gpu:
        return {"variants": ["sdpa", "dense", "sliding_window", "linear"], "lo": 10, "hi": 15}
    return {"variants": ["sdpa", "dense", "sliding_window", "linear"], "lo": 7, "hi": 11}


def run_store():
    """The run store, or — when its file cannot be used — an error saying why and what to do;
    the page stops there and every saved run stays as it was on disk."""
    from attn.home import AttnHomeError
    from attn.runs import RunStore

    try:
        return RunStore()
    except (AttnHomeError, OSError) as err:  # a newer schema, not a folder, a full disk
        st.error(f"The saved runs cannot be opened: {err}")
        st.stop()


@st.cache_data(max_entries=8, show_spinner=False)
def _roofline_points(path: str, kind: str, newest: int, count: int) -> list[dict]:
    store = run_store()
    points = []
    for summary in store.list(kind="profile", device=kind, limit=500):
        run = store.get(summary.id)
        r = run.results
        intensity = roofline_intensity(r)
        if r.get("achieved_tflops") and intensity:
            points.append({"variant": run.variant, "intensity": intensity,
                           "mode": r.get("mode") or "forward",  # saved before the regimes: forward
                           "achieved_tflops": r["achieved_tflops"],
                           "dtype": run.spec.get("dtype", "float32"),
                           "label": f"#{run.id} {summary.spec_short}"})
    return points


def roofline_points(device: str) -> list[dict]:
    """The saved profiles of this kind of device, read once per change of the store (not on
    every rerun of the page)."""
    store = run_store()
    newest = store.list(kind="profile", limit=1)
    return _roofline_points(str(store.path), "cuda" if device.startswith("cuda") else "cpu",
                            newest[0].id if newest else 0, store.count("profile"))
