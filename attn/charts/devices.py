"""Devices side by side (Compare and Economics): one bar a device for one piece of work, the
device on the x axis. rows: `device_compare.DeviceResult` as dicts."""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from attn.charts.style import _layout

KIND_COLORS = {"cuda": "#76b900", "cpu": "#60a5fa"}  # a GPU's bar green, a CPU's blue
MISSING_COLOR = "#475569"
# what each bar chart shows: (value key, y axis title, bar text)
DEVICE_METRICS = {
    "latency_ms": ("latency (ms, median)", lambda r: f"{r['latency_ms']:.3g} ms · {r['ratio']:.2f}×"),
    "roof_pct": ("share of its own roof (%)", lambda r: "not calibrated" if r["roof_pct"] is None
                 else f"{r['roof_pct']:.1f}%"),
    "usd_per_mtok": ("$ per million tokens", lambda r: f"${r['usd_per_mtok']:.3g} at ${r['price_per_hour']:.2f}/h"),
}


def device_label(row: dict) -> str:
    """The device's name, and where an imported run came from."""
    return row["device"] + (f" ({row['source']})" if row.get("source") else "")


def device_bars(rows: Sequence[dict], metric: str, title: str = "", height: int = 320) -> go.Figure:
    """One bar a device: latency (with the ratio to the fastest), the share of the device's own
    roof (a device that was not calibrated gets an empty slot that says so) or $/Mtok at its price."""
    axis, text = DEVICE_METRICS[metric]
    labels = [device_label(r) for r in rows]
    values = [r[metric] if r[metric] is not None else 0 for r in rows]
    colors = [KIND_COLORS.get(r["device_kind"], MISSING_COLOR) if r[metric] is not None else MISSING_COLOR
              for r in rows]
    # a missing value's bar has no height: its words stand above the axis instead of inside it
    where = ["auto" if r[metric] is not None else "outside" for r in rows]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colors, text=[text(r) for r in rows],
                           textposition=where, customdata=[r["run_id"] for r in rows],
                           hovertemplate="%{x}<br>%{text}<br>run #%{customdata}<extra></extra>"))
    fig.update_yaxes(title=axis, rangemode="tozero")
    if metric == "roof_pct":
        fig.update_yaxes(range=[0, max(100.0, *values)])
    return _layout(fig, title or axis, height=height)
