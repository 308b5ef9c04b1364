"""Devices side by side, for Compare and Economics: the same work (variant, mode, spec) measured on
several devices, as a table and bars with the device on the x axis (attn.device_compare)."""
from __future__ import annotations

from typing import Iterable

import pandas as pd
import streamlit as st

from attn import charts, device_compare
from attn.cost import USEFUL_FLOPS_NOTE
from ui import format as fmt
from ui.plot import show

NONE_YET = ("No work was measured on two devices yet. Runs of another machine come in with its run store: "
            "**Import another machine's runs** on the Runs page, or `python -m attn runs import OTHER.sqlite`; "
            "then a profile of the same variant, mode and spec on each device lines up here.")


def side_by_side(runs: Iterable, key: str, gpu_price: float, cpu_price: float, priced: bool = False) -> None:
    """The devices of one piece of work: the user picks the work; `priced` asks a price per device
    (else a GPU pays `gpu_price`, a CPU `cpu_price`)."""
    works = device_compare.works_on_several_devices(runs)
    if not works:
        st.info(NONE_YET)
        return
    pick = st.selectbox("the same work, measured on several devices", range(len(works)),
                        format_func=lambda i: works[i].label, key=f"{key}_work")
    work = works[pick]
    kinds = {r.device: r.device_kind for r in device_compare.side_by_side(work)}
    prices = {name: gpu_price if kind == "cuda" else cpu_price for name, kind in kinds.items()}
    if priced:
        cols = st.columns(min(len(prices), 4))
        for i, name in enumerate(prices):
            prices[name] = cols[i % len(cols)].number_input(
                f"{name} ($ per hour)", 0.0, 10_000.0, float(prices[name]), step=0.05, key=f"{key}_price_{i}",
                help="what this device costs you per hour; the default is the page's GPU or CPU price")
    rows = [r.to_dict() for r in device_compare.side_by_side(work, prices)]
    st.dataframe(pd.DataFrame([{
        "device": charts.device_label(r), "run": f"#{r['run_id']}", "latency": fmt.ms(r["latency_ms"]),
        "× the fastest": f"{r['ratio']:.2f}×",
        "share of its own roof": "—" if r["roof_pct"] is None else f"{r['roof_pct']:.1f}%",
        "achieved TFLOP/s": "—" if r["achieved_tflops"] is None else f"{r['achieved_tflops']:.4g}",
        "$/h": f"${r['price_per_hour']:.2f}", "$ per Mtok": f"${r['usd_per_mtok']:.4g}",
    } for r in rows]), hide_index=True, width="stretch")
    left, mid, right = st.columns(3)
    for col, metric in zip((left, mid, right), ("latency_ms", "roof_pct", "usd_per_mtok")):
        with col:
            show(charts.device_bars(rows, metric), key=f"{key}_{metric}")
    missing = [charts.device_label(r) for r in rows if r["roof_pct"] is None]
    st.caption(
        "Each device's newest run of this work. × the fastest: latency over the fastest device's. Share of "
        "its own roof: " + device_compare.ROOF_WORDS.get(work.mode, device_compare.ROOF_WORDS["forward"])
        + ", worked out where it measured, never against another device's roof"
        + (f" ({', '.join(missing)}: {device_compare.NOT_CALIBRATED})" if missing else "")
        + f". $ per Mtok = price per second × latency ÷ tokens × 10⁶, {rows[0]['tokens']:,} tokens a call "
        + ("(batch × new tokens)" if work.mode == "decode" else "(batch × seq)") + ". " + USEFUL_FLOPS_NOTE + ".")
