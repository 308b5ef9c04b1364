"""Measured numbers as curves and bars: a metric along a sweep (with fits, crossovers and memory
walls), the roofline, a telemetry series, plain bars."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from attn.charts.style import _layout, color_of
from attn.readable import nbytes

FLOPS_AXIS = "useful FLOPs"
METRIC_LABELS = {
    "latency_ms": "latency (ms, median)",
    "peak_bytes": "peak memory above baseline (bytes)",
    "flops": FLOPS_AXIS,
    "footprint_bytes": "inputs + peak (bytes)",
    "saved_bytes": "saved for the backward (bytes)",
    "bytes_read": "bytes read per step",
    "floor_ms": "bandwidth floor (ms)",
}
# how a roofline point says its regime (attn.regimes), beside its variant's colour
MODE_SYMBOLS = {"forward": "circle", "train": "diamond", "decode": "triangle-up"}


def metric_curve(points: Iterable[dict], metric: str, title: str = "", current_x: int | None = None,
                 x_label: str = "sequence length", log: bool = True, fits: dict | None = None,
                 crossovers: Iterable[dict] = (), walls: Iterable[dict] = (),
                 height: int = 360) -> go.Figure:
    """One metric against the swept axis, a line per variant (log-log by default).

    points: dicts with variant, x, status and the metric. Out-of-memory points are marked with a
    cross at the top of the plot; fitted exponents go in the legend; crossovers and memory
    walls are annotated.
    """
    fig = go.Figure()
    points = list(points)
    by_variant: dict[str, list[dict]] = {}
    for p in points:
        by_variant.setdefault(p["variant"], []).append(p)
    top = max((p[metric] for p in points if p.get("status", "ok") == "ok" and p.get(metric)), default=1)
    for variant, pts in by_variant.items():
        ok = sorted((p for p in pts if p.get("status", "ok") == "ok" and p.get(metric) is not None),
                    key=lambda p: p["x"])
        name = variant
        fit = (fits or {}).get(variant, {}).get(metric)
        if fit:
            name += f"  (∝ x^{fit['exponent']:.2f})"
        err = None
        if metric == "latency_ms" and ok and all(p.get("p10_ms") is not None for p in ok):
            err = dict(type="data", symmetric=False,
                       array=[p["p90_ms"] - p["latency_ms"] for p in ok],
                       arrayminus=[p["latency_ms"] - p["p10_ms"] for p in ok], thickness=1)
        fig.add_trace(go.Scatter(
            x=[p["x"] for p in ok], y=[p[metric] for p in ok], mode="lines+markers", name=name,
            line=dict(color=color_of(variant)), error_y=err,
            customdata=[[variant, p["x"]] for p in ok],
            hovertemplate=f"{variant}<br>x %{{x}}<br>{METRIC_LABELS.get(metric, metric)} %{{y:.4g}}<extra></extra>",
        ))
        oom = [p for p in pts if p.get("status") == "oom"]
        if oom:
            fig.add_trace(go.Scatter(
                x=[p["x"] for p in oom], y=[top] * len(oom), mode="markers", showlegend=False,
                marker=dict(symbol="x", size=12, color=color_of(variant)),
                hovertext=[p.get("message", "out of memory") for p in oom], hoverinfo="text",
                name=f"{variant} out of memory",
            ))
    mine = [c for c in crossovers if c["metric"] == metric]
    for row, c in enumerate(mine):
        _vmark(fig, c["x"], log, dict(dash="dot", color="#64748b"),
               f"{c['a']} / {c['b']} cross ≈ {c['x']:.0f}", "top left", row)
    shown = [w for w in walls if w.get("x") and metric in ("peak_bytes", "footprint_bytes")]
    for row, w in enumerate(shown, start=len(mine)):
        _vmark(fig, w["x"], log, dict(color=color_of(w["variant"]), dash="dash"),
               f"{w['variant']} wall {w['x']:,}" + (" (projected)" if w.get("projected") else ""),
               "top right", row)
    if current_x is not None:
        _vmark(fig, current_x, log, dict(color="#f8fafc", width=1), "current", "bottom right")
    axis_type = "log" if log else "linear"
    fig.update_xaxes(title=x_label, type=axis_type)
    fig.update_yaxes(title=METRIC_LABELS.get(metric, metric), type=axis_type)
    return _layout(fig, title or METRIC_LABELS.get(metric, metric), height=height)


def _vmark(fig: go.Figure, x: float, log: bool, line: dict, text: str, position: str,
           row: int = 0) -> None:
    """A vertical line with a label (labels of marks that lie close go on rows). plotly.js
    places a shape on a log axis by its data value but an annotation by log10 of it."""
    fig.add_vline(x=x, line=line)
    y = 1 - 0.07 * (row % 4) if "top" in position else 0.07 * (row % 4)
    fig.add_annotation(x=math.log10(x) if log else x, xref="x", y=y,
                       yref="y domain", yanchor="top" if "top" in position else "bottom",
                       xanchor="right" if "left" in position else "left", text=text, showarrow=False)


def latency_with_floor(points: Iterable[dict], x_label: str = "context (cached keys)",
                       fits: dict | None = None, crossovers: Iterable[dict] = (),
                       height: int = 360) -> go.Figure:
    """A decode sweep: each variant's step latency, and beside it (dashed, same colour) its
    bandwidth floor, the bytes the step reads over the device's calibrated copy bandwidth. The
    gap between the two lines is what the step loses to anything but reading its cache."""
    points = list(points)
    fig = metric_curve(points, "latency_ms", title="latency of one decode step, and its bandwidth floor",
                       x_label=x_label, fits=fits, crossovers=crossovers, height=height)
    by_variant: dict[str, list[dict]] = {}
    for p in points:
        if p.get("status", "ok") == "ok" and p.get("floor_ms"):
            by_variant.setdefault(p["variant"], []).append(p)
    for variant, pts in by_variant.items():
        pts.sort(key=lambda p: p["x"])
        fig.add_trace(go.Scatter(
            x=[p["x"] for p in pts], y=[p["floor_ms"] for p in pts], mode="lines",
            name=f"{variant} floor", line=dict(color=color_of(variant), dash="dash", width=1.5),
            customdata=[[nbytes(p.get("bytes_read"))] for p in pts],
            hovertemplate=(f"{variant} floor<br>x %{{x}}<br>%{{customdata[0]}} read: "
                           "%{y:.4g} ms at the copy bandwidth<extra></extra>")))
    return fig


def roofline(calibration: dict | None, runs: Iterable[dict], dtype: str = "float32") -> go.Figure:
    """Runs placed by arithmetic intensity and achieved TFLOP/s under the measured roof, one
    colour a variant and one symbol a regime (a run without a `mode` is a forward one).

    A decode run's intensity is its useful FLOPs over the bytes it reads, so it lands on the
    bandwidth slope; forward and train runs use the cost model's minimum bytes."""
    fig = go.Figure()
    runs = list(runs)
    xs = [r["intensity"] for r in runs if r.get("intensity")] or [1.0]
    lo, hi = min(xs) / 4, max(xs) * 4
    if calibration:
        peak = calibration["matmul_tflops"].get(dtype)
        bw = calibration["bandwidth_gbps"]
        if peak:
            ridge = peak * 1e12 / (bw * 1e9)
            lo, hi = min(lo, ridge / 8), max(hi, ridge * 8)
            grid = np.logspace(math.log10(lo), math.log10(hi), 200)
            roof = np.minimum(peak, grid * bw * 1e9 / 1e12)
            fig.add_trace(go.Scatter(x=grid, y=roof, mode="lines", name=f"roof ({dtype})",
                                     line=dict(color="#e2e8f0", width=2),
                                     hovertemplate="intensity %{x:.3g} FLOP/B<br>attainable %{y:.3g} TFLOP/s<extra></extra>"))
            fig.add_annotation(x=math.log10(ridge), y=math.log10(peak), text=f"ridge {ridge:.3g} FLOP/B",
                               showarrow=False, yshift=10)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["variant"], r.get("mode") or "forward"), []).append(r)
    several = len({mode for _, mode in groups}) > 1  # name the regime only where there is a choice
    for (variant, mode), rs in groups.items():
        name = f"{variant} · {mode}" if several else variant
        fig.add_trace(go.Scatter(
            x=[r["intensity"] for r in rs], y=[r["achieved_tflops"] for r in rs], mode="markers",
            name=name, legendgroup=variant,
            marker=dict(size=10, color=color_of(variant), symbol=MODE_SYMBOLS.get(mode, "circle")),
            text=[r.get("label", "") for r in rs],
            hovertemplate="%{text}<br>intensity %{x:.3g} FLOP/B<br>%{y:.3g} TFLOP/s<extra>" + name + "</extra>",
        ))
    fig.update_xaxes(title="arithmetic intensity (useful FLOPs / minimum bytes; decode: / bytes read)",
                     type="log")
    fig.update_yaxes(title="achieved TFLOP/s (useful FLOPs)", type="log")
    return _layout(fig, "Roofline", height=480)


MARK_LEVELS, MARK_STEP_PX = 3, 14  # job marks step down over 3 rows, 14 px apart


def telemetry_chart(samples: Sequence[dict], field: str, label: str,
                    marks: Sequence[tuple[float, str]] = (), t0: float | None = None) -> go.Figure:
    """One telemetry series over time (seconds ago), with job start/end marks."""
    fig = go.Figure()
    now = t0 if t0 is not None else (samples[-1]["t"] if samples else 0.0)
    pts = [(s["t"] - now, s[field]) for s in samples if s.get(field) is not None]
    fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                             name=label, line=dict(color="#f59e0b")))
    # jobs close together must not write their names over each other: each mark is a dotted
    # line and a one-character symbol (▶ start, ■ end), its name in the symbol's hover, and
    # neighbours step down in turn
    for i, (t, text) in enumerate(sorted(marks)):
        fig.add_vline(x=t - now, line=dict(color="#64748b", dash="dot"))
        fig.add_annotation(x=t - now, y=1, yref="paper", text=text[:1], hovertext=text, showarrow=False,
                           yshift=-MARK_STEP_PX * (i % MARK_LEVELS), font=dict(color="#cbd5e1"))
    fig.update_xaxes(title="seconds (0 = now)")
    fig.update_yaxes(title=label)
    if not pts:
        fig.add_annotation(text="not available on this machine", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return _layout(fig, label, height=220)


def bars(labels: Sequence[str], values: Sequence[float], title: str, axis: str,
         colors: Sequence[str] | None = None, log: bool = False) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(labels), y=list(values),
                           marker_color=list(colors) if colors else None,
                           hovertemplate="%{x}<br>%{y:.4g}<extra></extra>"))
    fig.update_yaxes(title=axis, type="log" if log else "linear")
    return _layout(fig, title, height=300)
