"""Roofline: every profiled run on this device's measured roof, marked by its regime."""
import streamlit as st

from attn import charts
from attn.cost import USEFUL_FLOPS_NOTE
from ui.plot import show
from ui import calibration, results

st.title(":material/landscape: Roofline")
st.caption("Each run at its arithmetic intensity and its achieved rate, under the roof this device "
           "measured: min(peak matmul rate, intensity × copy bandwidth). Forward: useful FLOPs ÷ "
           "the minimum bytes (q, k, v read once, the output written once); train: forward + "
           "backward FLOPs ÷ what both move; decode: the step's useful FLOPs ÷ the bytes it reads "
           "(its cache), so a decode step sits on the bandwidth slope. " + USEFUL_FLOPS_NOTE + ".")

device = results.device()
cal = calibration.calibrate_button(device)
if cal:
    st.caption("Calibration: " + calibration.summary(cal))
else:
    st.info("This device is not calibrated yet: the runs are shown without a roof.")

runs = results.roofline_points(device)

dtypes = sorted({r["dtype"] for r in runs}) or ["float32"]
dtype = st.radio("roof for dtype", dtypes, horizontal=True)
shown = [r for r in runs if r["dtype"] == dtype]
show(charts.roofline(cal, shown, dtype), key="roofline")
if not shown:
    st.info("No profiled runs in this dtype on this device yet: profile some in the Playground.")
else:
    counts = {m: sum(r["mode"] == m for r in shown) for m in ("forward", "train", "decode")}
    st.caption("Marks: ● forward · ◆ train · ▲ decode (runs saved before the regimes are forward) — "
               + ", ".join(f"{n} {m}" for m, n in counts.items() if n) + ".")
