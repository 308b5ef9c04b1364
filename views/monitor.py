"""Live monitor: GPU and CPU counters as curves, updating every second, with jobs marked (▶ start,
■ end; the job's name in the mark's hover)."""
import time

import streamlit as st

from attn import charts, jobs, telemetry
from ui.plot import show

st.title(":material/monitor_heart: Live monitor")
sampler = telemetry.shared_sampler()
st.caption(sampler.gpu_status + " · sampled at 10 Hz; curves refresh every second. Jobs are marked ▶ (start) "
           "and ■ (end): hover a mark for the job's name.")
window = st.select_slider("window", [30, 60, 120, 300, 600], value=120, format_func=lambda s: f"{s} s")

SERIES = [
    ("gpu_util_pct", "GPU utilisation (%)"), ("gpu_mem_used_bytes", "GPU memory used (bytes)"),
    ("power_w", "GPU power (W)"), ("temperature_c", "GPU temperature (°C)"),
    ("sm_clock_mhz", "SM clock (MHz)"), ("cpu_pct", "CPU, all cores (%)"),
    ("process_rss_bytes", "attn process RSS (bytes)"), ("sys_mem_used_bytes", "system memory used (bytes)"),
]


def job_marks(since: float) -> list[tuple[float, str]]:
    marks = []
    for handle in jobs.default_runner().jobs():
        name = f"{handle.kind}: {handle.title}" if handle.title else handle.kind
        if handle.started_at and handle.started_at >= since:
            marks.append((handle.started_at, f"▶ started {name}"))
        if handle.finished_at and handle.finished_at >= since:
            marks.append((handle.finished_at, f"■ ended {name}"))
    return marks


@st.fragment(run_every=1.0)
def curves() -> None:
    now = time.time()
    samples = [s.__dict__ for s in sampler.samples(since=now - window)]
    marks = job_marks(now - window)
    shown = [(f, label) for f, label in SERIES if sampler.gpu_available or not f.startswith(("gpu", "power", "temp", "sm_"))]
    cols = st.columns(2)
    for i, (field, label) in enumerate(shown):
        with cols[i % 2]:
            show(charts.telemetry_chart(samples, field, label, marks, t0=now), key=f"mon_{field}")


curves()
