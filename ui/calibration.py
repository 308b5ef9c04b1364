"""Device calibration from the pages: measured in the worker, cached on disk by attn."""
from __future__ import annotations

import streamlit as st

from attn import calibrate, tasks
from ui import follow

CALIBRATING = "calibrating"  # the calibration job, under this key of the session


def cached(device: str) -> dict | None:
    cal = calibrate.cached(device)
    return cal.to_dict() if cal else None


def calibrate_button(device: str) -> dict | None:
    """A button that measures the device; returns the calibration when there is one."""
    if st.button("Calibrate this device", help="measures bf16, fp16 and fp32 matmul rates and the "
                 "memory bandwidth (a large copy); a few seconds, cached per device and torch version"):
        follow.start(CALIBRATING, follow.job(tasks.calibrate_task, device, kind="calibrate",
                                             title="calibration"))
    follow.follow(CALIBRATING, "Calibration")  # attn keeps the result on disk
    return cached(device)


def summary(cal: dict) -> str:
    rates = " · ".join(f"{k} {v:.3g} TFLOP/s" for k, v in cal["matmul_tflops"].items())
    return f"{rates} · copy {cal['bandwidth_gbps']:.4g} GB/s (measured {cal['measured_at']})"
