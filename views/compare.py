"""Compare: two or more saved runs side by side (maps, cost cards and the difference), or one piece
of work side by side on the devices that measured it."""
import pandas as pd
import streamlit as st

from attn import charts
from attn.regime_numbers import LATENCY_WORDS, MODE_WORDS, Number, numbers_of
from attn.runs import spec_short
from attn.spec import AttentionSpec
from ui.plot import show
from ui import format as fmt
from ui import maps, results
from ui import devices
from ui.errors import shown_as_error
from ui.state import url_choice, url_names

MAPS_KEY = "cmp_maps"  # the follow key of this page's map jobs

st.title(":material/compare: Compare")
store = results.run_store()
profiles = store.list(kind="profile", limit=300)
if not profiles:
    st.info("No profiled runs yet: press :material/play_arrow: **Profile** in the Playground, then come back.")
    st.stop()

BY = ["runs", "devices"]
by = st.radio("Side by side", BY, index=BY.index(url_choice("by", "runs", BY)),
              horizontal=True, key="cmp_by", help="devices: the same variant, mode and spec on each device that "
              "measured it (runs of other machines come in on the Runs page)")
if by == "devices":
    st.query_params["by"] = "devices"
    from attn.economics import DEFAULT_CPU_PRICE_PER_HOUR, DEFAULT_GPU_PRICE_PER_HOUR

    devices.side_by_side([store.get(s.id) for s in profiles], "cmp_dev", DEFAULT_GPU_PRICE_PER_HOUR,
                         DEFAULT_CPU_PRICE_PER_HOUR)
    st.caption("Prices: a GPU at the Economics page's default GPU price, a CPU at its CPU price; set each "
               "device's own price on the Economics page.")
    st.stop()
st.query_params.pop("by", None)

labels = {s.id: f"#{s.id} {s.variant} · {s.mode} · {s.spec_short} · {s.device} · {s.created_at[:19]}"
          for s in profiles}
wanted = [int(x) for x in url_names("runs", [], [str(i) for i in labels])]
default = wanted or [s.id for s in profiles[:2]]
chosen = st.multiselect("Runs", list(labels), default=default, format_func=labels.get, key="cmp_runs")
st.query_params["runs"] = ",".join(map(str, chosen))
if len(chosen) < 2:
    st.info("Choose two or more runs.")
    st.stop()

runs = [store.get(i) for i in chosen]
COMMON = (Number("latency_ms", "latency (ms, median)", fmt.ms, comparable=True),
          Number("p10_ms", "p10 (ms)", fmt.ms), Number("p90_ms", "p90 (ms)", fmt.ms),
          Number("flops", "useful FLOPs", lambda v: fmt.si(v, "FLOP"), comparable=True),
          Number("achieved_tflops", "achieved TFLOP/s", lambda v: "—" if v is None else f"{v:.4g}"),
          Number("peak_bytes", "peak memory", fmt.nbytes, comparable=True),
          Number("kernel_error", "kernel error", fmt.ratio), Number("approx_error", "approx error", fmt.ratio),
          Number("energy_j", "energy (J/call)", lambda v: "—" if v is None else f"{v:.3g}"))
modes = list(dict.fromkeys(run.mode for run in runs))
# each mode's own numbers, below the common ones, for the modes among the chosen runs
rows = list(COMMON) + [n for mode in modes for n in numbers_of(mode)]
# a ratio only against the first run of the same mode: a decode step over a forward call, or a
# training step over either, compares different work, and the quotient would read as a speed-up
base = {}
for run in runs:
    base.setdefault(run.mode, run)
table = {}
for run in runs:
    own = {n.key for n in COMMON + numbers_of(run.mode)}
    col = {"mode": run.mode}
    for n in rows:
        if n.key in own:
            v, b = n.value(run.results), n.value(base[run.mode].results)
            text = n.text(v)
            if n.comparable and run is not base[run.mode] and v is not None and b:
                text += f"  ({v / b:.2f}×)"
        else:
            text = "n/a"  # a number of another regime
        col[n.label] = text
    col["device"] = run.device
    col["spec"] = spec_short(run.spec)
    table[f"#{run.id} {run.variant}"] = col
st.subheader("Numbers")
if len(modes) > 1:
    st.warning("These runs measured different regimes (" + "; ".join(
        f"{m}: " + ", ".join(f"#{r.id}" for r in runs if r.mode == m) for m in modes)
        + "). Their numbers stand side by side, but a ratio is given only against the first run of the "
        "same mode: one decode step against a forward call over the whole sequence, or a training step "
        "against either, is different work, not a speed-up.")
st.caption(f"Ratios are against #{base[modes[0]].id}" + "".join(
    f", and #{base[m].id} for {m} runs" for m in modes[1:]) + ". FLOPs are useful FLOPs (4·B·H·D per "
    "unmasked pair; train: forward + backward, the backward counted as 2× the forward's matmuls). "
    + "Latency: " + "; ".join(f"{m}, the {LATENCY_WORDS.get(m, 'median of the saved repeats')}" for m in modes)
    + ". Runs saved before the regimes are forward.")
frame = pd.DataFrame(table)
st.dataframe(frame, width="stretch", height=min(900, 38 + 35 * len(frame)))  # every row, no inner scroll
with st.expander("what each mode measures"):
    for m in modes:
        st.markdown(f"- {MODE_WORDS.get(m, m + ': a mode this attn does not describe')}")

st.subheader("Maps (head 0)")
wanted, unreadable = {}, {}  # run id -> its map's arguments, or why its saved spec cannot be read
for run in runs:
    try:
        wanted[run.id] = maps.MapArgs(AttentionSpec.from_dict(run.spec), run.variant, 0, 128, "mean", 1.0, None)
    except ValueError as err:
        unreadable[run.id] = f"#{run.id} map: {err}"
drawable = maps.to_draw(list(wanted.values()))
if drawable and st.button("Draw the maps", key="cmp_draw_maps", icon=":material/grid_on:",
                          help="these runs' maps take a while on this device: they are drawn in the worker, "
                               "with a Cancel button"):
    if not maps.request(drawable, key=MAPS_KEY):
        st.info("The maps asked for before are still being drawn: let them end, or cancel them, first.")
maps.follow_jobs(MAPS_KEY)
cols = st.columns(min(len(runs), 3))
drawn = []  # (run, maps) of the runs whose map is on the page
for i, run in enumerate(runs):
    with cols[i % len(cols)], shown_as_error(f"#{run.id} map"):
        if run.id in unreadable:
            st.error(unreadable[run.id])
            continue
        m = maps.page_maps(wanted[run.id], MAPS_KEY)
        if m is None:
            continue
        drawn.append((run, m))
        title = f"#{run.id} {run.variant}" + (" (the step's queries against the cache)" if run.mode == "decode"
                                              else "")
        show(charts.attention_heatmap(m["map"]["values"], m["map"]["q_edges"], m["map"]["k_edges"],
                                      title=title, log_scale=True), key=f"cmp_map_{run.id}")
same_grid = len(drawn) >= 2 and all(m["map"]["q_edges"] == drawn[0][1]["map"]["q_edges"]
                                    and m["map"]["k_edges"] == drawn[0][1]["map"]["k_edges"] for _, m in drawn[:2])
if same_grid:
    import numpy as np

    (run_a, map_a), (run_b, map_b) = drawn[:2]
    diff = np.abs(np.asarray(map_b["map"]["values"]) - np.asarray(map_a["map"]["values"]))
    show(charts.attention_heatmap(diff, map_a["map"]["q_edges"], map_a["map"]["k_edges"],
                                  title=f"|#{run_b.id} − #{run_a.id}|"), key="cmp_diff")
