"""Compare: two or more saved runs side by side: maps, cost cards and the difference."""
import pandas as pd
import streamlit as st

from attn import charts
from attn.runs import spec_short
from attn.spec import AttentionSpec
from ui.plot import show
from ui import format as fmt
from ui import results
from ui.errors import shown_as_error
from ui.state import url_list

st.title(":material/compare: Compare")
store = results.run_store()
profiles = store.list(kind="profile", limit=300)
if not profiles:
    st.info("No profiled runs yet: press :material/play_arrow: **Profile** in the Playground, then come back.")
    st.stop()

labels = {s.id: f"#{s.id} {s.variant} · {s.spec_short} · {s.device} · {s.created_at[:19]}" for s in profiles}
wanted = [int(x) for x in url_list("runs", []) if x.isdigit() and int(x) in labels]
default = wanted or [s.id for s in profiles[:2]]
chosen = st.multiselect("Runs", list(labels), default=default, format_func=labels.get, key="cmp_runs")
st.query_params["runs"] = ",".join(map(str, chosen))
if len(chosen) < 2:
    st.info("Choose two or more runs.")
    st.stop()

runs = [store.get(i) for i in chosen]
ROWS = [("latency_ms", "latency (ms, median)", fmt.ms), ("p10_ms", "p10 (ms)", fmt.ms), ("p90_ms", "p90 (ms)", fmt.ms),
        ("flops", "useful FLOPs", lambda v: fmt.si(v, "FLOP")), ("achieved_tflops", "achieved TFLOP/s", lambda v: f"{v:.4g}"),
        ("peak_bytes", "peak memory", fmt.nbytes), ("kernel_error", "kernel error", fmt.ratio),
        ("approx_error", "approx error", fmt.ratio), ("energy_j", "energy (J/call)", lambda v: f"{v:.3g}")]
base = runs[0].results
table = {}
for run in runs:
    col = {}
    for key, label, f in ROWS:
        v = run.results.get(key)
        text = "—" if v is None else f(v)
        b = base.get(key)
        if run is not runs[0] and v is not None and b and key in ("latency_ms", "peak_bytes", "flops"):
            text += f"  ({v / b:.2f}×)"
        col[label] = text
    col["device"] = run.device
    col["spec"] = spec_short(run.spec)
    table[f"#{run.id} {run.variant}"] = col
st.subheader("Numbers")
st.caption(f"Ratios are against #{runs[0].id}. FLOPs are useful FLOPs (4·B·H·D per unmasked pair).")
st.dataframe(pd.DataFrame(table), width="stretch")

st.subheader("Maps (head 0)")
cols = st.columns(min(len(runs), 3))
maps = []
for i, run in enumerate(runs):
    with cols[i % len(cols)], shown_as_error(f"#{run.id} map"):
        spec = AttentionSpec.from_dict(run.spec)
        m = results.maps(spec, run.variant, 0, 128, "mean", 1.0)
        maps.append(m)
        show(charts.attention_heatmap(m["map"]["values"], m["map"]["q_edges"], m["map"]["k_edges"],
                                                 title=f"#{run.id} {run.variant}", log_scale=True), key=f"cmp_map_{run.id}")
same_grid = len(maps) >= 2 and all(m["map"]["q_edges"] == maps[0]["map"]["q_edges"]
                                   and m["map"]["k_edges"] == maps[0]["map"]["k_edges"] for m in maps[:2])
if same_grid:
    import numpy as np

    diff = np.abs(np.asarray(maps[1]["map"]["values"]) - np.asarray(maps[0]["map"]["values"]))
    show(charts.attention_heatmap(diff, maps[0]["map"]["q_edges"], maps[0]["map"]["k_edges"],
                                             title=f"|#{runs[1].id} − #{runs[0].id}|"), key="cmp_diff")
