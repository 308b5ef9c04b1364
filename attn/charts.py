"""Plotly figure builders: data in, figure out. No Streamlit, no torch, so each is testable alone.

Every figure that shows FLOPs says they are useful FLOPs (see attn.cost).
"""
from __future__ import annotations

import base64
import io
import math
from typing import Iterable, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from attn.variants import color_of

# Streamlit's front end swaps colours #000001..#000032 for its theme's (they are its template's
# placeholders), and Inferno starts at #000004: nudge it, or zero weights turn light purple
INFERNO = ["#010005" if c == "#000004" else c for c in plotly.colors.sequential.Inferno]
GREYS = list(plotly.colors.sequential.Greys)
VIRIDIS = list(plotly.colors.sequential.Viridis)

FLOPS_AXIS = "useful FLOPs"
METRIC_LABELS = {
    "latency_ms": "latency (ms, median)",
    "peak_bytes": "peak memory above baseline (bytes)",
    "flops": FLOPS_AXIS,
    "footprint_bytes": "inputs + peak (bytes)",
}
LABELLED_TOKENS = 64  # a map with more tokens than this labels only some of them on its axes
MAX_CELLS = 512  # a heatmap never draws more than 512 x 512 cells (~1.4 MB as binary float32)


# Margins. plotly grows a margin that its colour bars, legend or tick labels do not fit in, and
# then draws the figure again from the start: on the Models page (2 cores) a first draw took
# ~0.2 s longer that way. So the margins are sized for what a figure holds, from the px these take
# at plotly's 12 px font, a little generously; plotly still grows one that falls short.
CHAR_PX = 7  # a character of a 12 px tick label, about
COLORBAR_MARGIN = 120  # a colour bar at the right: its gap, bar, tick labels and title
LEGEND_BELOW = -0.2  # the legend's top, in plot heights below the plot
LEGEND_PX = 41  # a row of legend below the x axis, its title and tick labels included


def _shows_colorbar(trace) -> bool:
    if trace.type in ("heatmap", "contour", "histogram2d"):
        shown, bar = trace.showscale is not False, trace.colorbar
    elif trace.type == "scatter" and trace.marker is not None:
        shown, bar = bool(trace.marker.showscale), trace.marker.colorbar
    else:
        return False
    return shown and (bar is None or bar.x is None or bar.x >= 1)


def _shows_legend(fig: go.Figure) -> bool:
    if fig.layout.showlegend is not None:
        return bool(fig.layout.showlegend)
    return sum(trace.showlegend is not False for trace in fig.data) > 1


def fitted_margin(fig: go.Figure, height: int, top: int = 40) -> dict:
    """Margins (px) that fit the figure's right-hand colour bars and its legend below."""
    bottom = 40
    if _shows_legend(fig):
        # the legend hangs LEGEND_BELOW of the plot's own height below it: solve for b
        bottom = math.ceil((-LEGEND_BELOW * (height - top) + LEGEND_PX) / (1 - LEGEND_BELOW)) + 6
    right = COLORBAR_MARGIN if any(_shows_colorbar(t) for t in fig.data) else 20
    return dict(l=70, r=right, t=top, b=bottom)


def _layout(fig: go.Figure, title: str, height: int = 360, margin: dict | None = None) -> go.Figure:
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=margin or fitted_margin(fig, height), template="plotly_dark",
                      legend=dict(orientation="h", y=LEGEND_BELOW))
    # plotly's default ("hide past div") measures every tick label for overflow; none can
    # overflow a margin sized for it
    fig.update_xaxes(ticklabeloverflow="allow")
    fig.update_yaxes(ticklabeloverflow="allow")
    return fig


def _ranges(edges: Sequence[int]) -> list[str]:
    edges = list(edges)
    return [f"{a}" if b - a == 1 else f"{a}–{b - 1}" for a, b in zip(edges[:-1], edges[1:])]


def _check_size(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.shape[0] > MAX_CELLS or values.shape[1] > MAX_CELLS:
        raise ValueError(f"a map of {values.shape[0]} x {values.shape[1]} cells is too large to "
                         f"draw: pool it to at most {MAX_CELLS} per side (attn.maps does)")
    return values


def attention_heatmap(values: np.ndarray, q_edges: Sequence[int], k_edges: Sequence[int],
                      title: str = "attention weights", labels: tuple[list[str], list[str]] | None = None,
                      log_scale: bool = False) -> go.Figure:
    """A head's (pooled) attention map; the hover names each cell's query and key ranges.

    Axis labels carry the ranges, so the hover needs no per-cell text, and z goes to the
    browser as a binary float32 array: a 512 x 512 map stays under 2 MB.
    """
    values = _check_size(values)
    z = np.log10(np.maximum(values, 1e-6)).astype(np.float32) if log_scale else values
    y, x = labels if labels else (_ranges(q_edges), _ranges(k_edges))
    what = "log10 weight" if log_scale else "weight"
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, colorscale=INFERNO, colorbar=dict(title=what),
        hovertemplate=f"queries %{{y}} × keys %{{x}}<br>{what} %{{z:.4g}}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", title="query", type="category", showticklabels=bool(labels))
    fig.update_xaxes(title="key", type="category", showticklabels=bool(labels))
    if labels and len(labels[0]) > LABELLED_TOKENS:
        # plotly measures every category label it draws: 128 of them on both axes of two maps took
        # about 1 s of the Models page's first draw on 2 cores. Every label stays in the hover.
        fig.update_yaxes(tickmode="array", tickvals=_every_nth(labels[0]))
    if labels and len(labels[1]) > LABELLED_TOKENS:
        fig.update_xaxes(tickmode="array", tickvals=_every_nth(labels[1]))
    margin = fitted_margin(fig, 420)
    if labels:  # room for the longest label drawn, the key axis's turned on its side
        y_shown, x_shown = (_every_nth(a) if len(a) > LABELLED_TOKENS else a for a in labels)
        margin.update(l=40 + CHAR_PX * max(map(len, y_shown), default=0),
                      b=45 + CHAR_PX * max(map(len, x_shown), default=0))
    return _layout(fig, title, height=420, margin=margin)


def _every_nth(labels: Sequence[str], most: int = 16) -> list[str]:
    """At most `most` of the labels, evenly spaced, the first among them."""
    return list(labels[::math.ceil(len(labels) / most)])


def mask_heatmap(density: np.ndarray, q_edges: Sequence[int], k_edges: Sequence[int],
                 title: str = "mask") -> go.Figure:
    """Share of (query, key) pairs that the mask lets through, per cell: the pattern."""
    density = _check_size(density)
    fig = go.Figure(go.Heatmap(
        z=density, x=_ranges(k_edges), y=_ranges(q_edges), zmin=0, zmax=1,
        colorscale=GREYS[::-1], colorbar=dict(title="visible"),  # visible pairs light on dark
        hovertemplate="queries %{y} × keys %{x}<br>%{z:.0%} of pairs visible<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", title="query", type="category", showticklabels=False)
    fig.update_xaxes(title="key", type="category", showticklabels=False)
    return _layout(fig, title, height=420)


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


def roofline(calibration: dict | None, runs: Iterable[dict], dtype: str = "float32") -> go.Figure:
    """Runs placed by arithmetic intensity and achieved TFLOP/s under the measured roof."""
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
    by_variant: dict[str, list[dict]] = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
    for variant, rs in by_variant.items():
        fig.add_trace(go.Scatter(
            x=[r["intensity"] for r in rs], y=[r["achieved_tflops"] for r in rs], mode="markers",
            name=variant, marker=dict(size=10, color=color_of(variant)),
            text=[r.get("label", "") for r in rs],
            hovertemplate="%{text}<br>intensity %{x:.3g} FLOP/B<br>%{y:.3g} TFLOP/s<extra>" + variant + "</extra>",
        ))
    fig.update_xaxes(title="arithmetic intensity (useful FLOPs / minimum bytes)", type="log")
    fig.update_yaxes(title="achieved TFLOP/s (useful FLOPs)", type="log")
    return _layout(fig, "Roofline", height=480)


def telemetry_chart(samples: Sequence[dict], field: str, label: str,
                    marks: Sequence[tuple[float, str]] = (), t0: float | None = None) -> go.Figure:
    """One telemetry series over time (seconds ago), with job start/end marks."""
    fig = go.Figure()
    now = t0 if t0 is not None else (samples[-1]["t"] if samples else 0.0)
    pts = [(s["t"] - now, s[field]) for s in samples if s.get(field) is not None]
    fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                             name=label, line=dict(color="#f59e0b")))
    for t, text in marks:
        fig.add_vline(x=t - now, line=dict(color="#64748b", dash="dot"), annotation_text=text,
                      annotation_position="top left")
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


# -- economics --------------------------------------------------------------------------------
DOMINATED_COLOR = "#64748b"
ERROR_FLOOR = 1e-12  # an error of exactly 0 still gets a place on the log axis


def per_token_curve(rows: Iterable[dict], metric: str, axis_label: str, title: str = "",
                    height: int = 340) -> go.Figure:
    """A per-token price (usd_per_mtok, joules_per_mtok) against the sequence length, a line
    per variant. rows: dicts with variant, seq and the metric (`TokenCost` as a dict)."""
    points = [{"variant": r["variant"], "x": r["seq"], "status": "ok", metric: r[metric]}
              for r in rows if r.get(metric) is not None]
    fig = metric_curve(points, metric, title=title or axis_label, height=height)
    fig.update_yaxes(title=axis_label)
    return fig


def frontier_chart(points: Iterable[dict], cost_label: str, title: str = "",
                   log_cost: bool = True, height: int = 360) -> go.Figure:
    """approx_error against a cost, a marker per variant: the Pareto frontier in colour and
    joined by a step line, dominated variants grey. points: dicts with label, error, cost,
    dominated and dominated_by (`economics.FrontierPoint` as a dict)."""
    points = list(points)
    fig = go.Figure()
    front = sorted((p for p in points if not p["dominated"]), key=lambda p: (p["cost"], p["error"]))
    if len(front) > 1:
        fig.add_trace(go.Scatter(
            x=[p["cost"] for p in front], y=[max(p["error"], ERROR_FLOOR) for p in front],
            mode="lines", line=dict(color="#e2e8f0", width=1, dash="dot", shape="hv"),
            name="frontier", hoverinfo="skip"))
    for p in points:
        beaten = p["dominated"]
        fig.add_trace(go.Scatter(
            x=[p["cost"]], y=[max(p["error"], ERROR_FLOOR)], mode="markers+text",
            name=p["label"] + (" (dominated)" if beaten else ""), text=[p["label"]],
            textposition="top center",
            textfont=dict(color=DOMINATED_COLOR if beaten else color_of(p["label"])),
            marker=dict(size=12, color=DOMINATED_COLOR if beaten else color_of(p["label"]),
                        opacity=0.45 if beaten else 1.0, line=dict(width=1, color="#0f172a")),
            hovertemplate=(f"{p['label']}<br>{cost_label} %{{x:.4g}}<br>approx error {p['error']:.3g}"
                           + (f"<br>dominated by {p['dominated_by']}" if beaten else "<br>on the frontier")
                           + "<extra></extra>")))
    fig.update_xaxes(title=cost_label, type="log" if log_cost else "linear",
                     range=_padded([p["cost"] for p in points], log_cost))
    fig.update_yaxes(title="approx error (‖out − full‖/‖full‖)", type="log", exponentformat="power",
                     range=_padded([max(p["error"], ERROR_FLOOR) for p in points], True))
    fig.update_layout(showlegend=False)  # every marker carries its name
    return _layout(fig, title or f"quality against {cost_label}", height=height)


def _padded(values: Sequence[float], log: bool, pad: float = 0.12) -> list[float] | None:
    """An axis range with room around the points for their labels (log10 units on a log axis)."""
    values = [math.log10(v) if log else v for v in values if not log or v > 0]
    if not values:
        return None
    lo, hi = min(values), max(values)
    room = pad * (hi - lo) + (0.3 if log else abs(hi) * 0.1 or 1.0)
    return [lo - room, hi + room]


def context_fit_bars(fits: Iterable[dict], budget_label: str, height: int = 320) -> go.Figure:
    """The longest sequence each variant fits in a memory budget; projected bars are hatched
    and paler. fits: dicts with variant, max_seq, projected (`economics.ContextFit`)."""
    fits = [f for f in fits if f.get("max_seq")]
    fig = go.Figure(go.Bar(
        x=[f["variant"] for f in fits], y=[f["max_seq"] for f in fits],
        marker=dict(color=[color_of(f["variant"]) for f in fits],
                    opacity=[0.55 if f["projected"] else 1.0 for f in fits],
                    pattern=dict(shape=["/" if f["projected"] else "" for f in fits])),
        text=[f"{f['max_seq']:,}" + (" (projected)" if f["projected"] else "") for f in fits],
        textposition="outside",
        hovertemplate="%{x}<br>longest sequence %{y:,}<extra></extra>"))
    fig.update_yaxes(title="longest sequence that fits", type="log")
    return _layout(fig, f"longest context within {budget_label}", height=height)


# -- real models (the Models page) ----------------------------------------------------------
COST_PARTS = (  # (key in a layer_costs row, label, colour): stacked bottom to top
    ("attention_core_flops", "attention core (QKᵀ, AV)", "#ef4444"),
    ("qkv_flops", "Q/K/V projections", "#f59e0b"),
    ("o_flops", "O projection", "#eab308"),
    ("mlp_flops", "MLP", "#3b82f6"),
)
MOSAIC_GAP = 1  # empty cells between two small maps of the model view (2 from 32 cells up)
# the mosaic's log colours stop at 1e-3: a few near-zero cells would otherwise take most of the
# scale and every map would look alike
MOSAIC_LOG_FLOOR = -3.0
MOSAIC_LEVELS = 255  # colours of the model view's image; one more index is transparent


def _click_targets(fig: go.Figure, layer_of: np.ndarray, head_of: np.ndarray, x: np.ndarray, y0: np.ndarray,
                   width: float, height: float, hovertext: Sequence[str], col: int | None = None) -> None:
    """Invisible bars over the cells a click should open. A heatmap is not selectable in plotly
    (a click on it selects nothing), a bar is: the click selects the bar and its customdata
    says which (layer, head) it covers. The bars take the hover, so they carry the hover text."""
    fig.add_trace(go.Bar(
        x=x, y=np.full(len(x), height, dtype=float), base=y0, width=width, orientation="v",
        marker=dict(color="rgba(255,255,255,0.01)", line=dict(width=0)), showlegend=False,
        customdata=np.stack([layer_of, head_of], axis=-1), hovertext=list(hovertext),
        hovertemplate="%{hovertext}<extra></extra>", name="open a head",
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
    ), **({} if col is None else dict(row=1, col=col)))
    fig.update_layout(barmode="overlay", bargap=0)


def clicked_head(point: dict) -> tuple[int, int] | None:
    """(layer, head) of a point that Streamlit's plotly selection reports for a click on
    `model_view` or `head_grid`; None for anything else."""
    data = point.get("customdata") if isinstance(point, dict) else None
    if isinstance(data, dict):  # Streamlit hands arrays over as {"0": ..., "1": ...}
        data = [data.get("0"), data.get("1")]
    try:
        layer, head = int(data[0]), int(data[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return layer, head


def _palette_png(values: np.ndarray, vmin: float, vmax: float, colorscale: Sequence[str]) -> str:
    """values as a PNG data URI: 255 colours interpolated along the colour scale as plotly does,
    NaN transparent. A palette PNG of a 400 x 800 mosaic is ~0.2 MB where the same cells as a float32
    heatmap are ~2 MB, and the browser shows an image without colouring each cell in JavaScript."""
    from PIL import Image  # Streamlit's dependency; only this figure needs it

    stops = np.array([plotly.colors.hex_to_rgb(c) for c in colorscale], dtype=float)
    levels = np.linspace(0.0, 1.0, MOSAIC_LEVELS)
    palette = np.stack([np.interp(levels, np.linspace(0.0, 1.0, len(stops)), stops[:, k])
                        for k in range(3)], axis=-1).round().astype(np.uint8)
    scaled = (values - vmin) / max(vmax - vmin, 1e-12) * (MOSAIC_LEVELS - 1)
    index = np.where(np.isnan(values), MOSAIC_LEVELS,
                     np.clip(np.round(np.nan_to_num(scaled)), 0, MOSAIC_LEVELS - 1)).astype(np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette([*palette.ravel().tolist(), 0, 0, 0])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=MOSAIC_LEVELS)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def mosaic_levels(fig: go.Figure) -> np.ndarray:
    """The model view's image back as colour levels: 0..MOSAIC_LEVELS-1 from its colour bar's
    minimum to its maximum, MOSAIC_LEVELS where there is no map."""
    from PIL import Image

    source = fig.data[0].source
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))


def model_view(maps: np.ndarray, title: str = "model view", log_scale: bool = True,
               selected: tuple[int, int] | None = None, notes: np.ndarray | None = None) -> go.Figure:
    """Every head of every layer as one mosaic: rows are layers, columns heads.

    maps: (layers, heads, cells, cells) weights, pooled or exact. The mosaic is one image (see
    `_palette_png`) with empty cells between the small maps, and a colour bar beside it; a click
    on a map selects it (see `clicked_head`). notes: an optional (layers, heads) array of hover
    lines per head.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 4 or maps.shape[2] != maps.shape[3]:
        raise ValueError(f"model_view needs (layers, heads, cells, cells) maps, got shape {maps.shape}")
    layers, heads, cells, _ = maps.shape
    gap = MOSAIC_GAP if cells < 32 else 2 * MOSAIC_GAP
    step = cells + gap
    if layers * step > 4 * MAX_CELLS or heads * step > 4 * MAX_CELLS:
        raise ValueError(f"{layers} x {heads} maps of {cells} cells are too many to draw: pool "
                         "them to fewer cells")
    values = np.log10(np.maximum(maps, 1e-6)) if log_scale else maps
    z = np.full((layers * step - gap, heads * step - gap), np.nan, dtype=np.float32)
    for layer in range(layers):
        for head in range(heads):
            z[layer * step:layer * step + cells, head * step:head * step + cells] = values[layer, head]
    what = "log10 weight" if log_scale else "weight"
    zmin = max(float(np.nanmin(z)), MOSAIC_LOG_FLOOR) if log_scale else 0.0
    zmax = max(float(np.nanmax(z)), zmin + 1e-6)
    fig = go.Figure(go.Image(source=_palette_png(z, zmin, zmax, INFERNO), x0=0, dx=1, y0=0, dy=1,
                             hoverinfo="skip", name="maps"))
    # the image has no colour bar of its own: an empty scatter carries the scale
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(colorscale=INFERNO, cmin=zmin, cmax=zmax, color=[zmin], showscale=True,
                                         colorbar=dict(title=what, thickness=12, len=0.9))))
    layer_of, head_of = (a.ravel() for a in np.mgrid[0:layers, 0:heads])
    text = [f"layer {lay} · head {h}" + (f"<br>{notes[lay, h]}" if notes is not None else "")
            + "<br>click to open" for lay, h in zip(layer_of, head_of)]
    _click_targets(fig, layer_of, head_of, x=head_of * step + (cells - 1) / 2, y0=layer_of * step - 0.5,
                   width=cells, height=cells, hovertext=text)
    centre = (cells - 1) / 2
    fig.update_xaxes(tickmode="array", tickvals=[h * step + centre for h in range(heads)],
                     ticktext=[str(h) for h in range(heads)], title="head", side="top", showgrid=False,
                     zeroline=False, range=[-0.5, z.shape[1] - 0.5], constrain="domain")
    fig.update_yaxes(tickmode="array", tickvals=[lay * step + centre for lay in range(layers)],
                     ticktext=[str(lay) for lay in range(layers)], title="layer", showgrid=False,
                     zeroline=False, range=[z.shape[0] - 0.5, -0.5], autorange=False, scaleanchor="x",
                     constrain="domain")
    if selected is not None:
        layer, head = selected
        if 0 <= layer < layers and 0 <= head < heads:
            fig.add_shape(type="rect", xref="x", yref="y", line=dict(color="#22d3ee", width=2),
                          x0=head * step - 0.5, x1=head * step + cells - 0.5,
                          y0=layer * step - 0.5, y1=layer * step + cells - 0.5)
    # square cells: a page-wide mosaic plots about 900 px across (a wide page, less the colour bar)
    fig = _layout(fig, title, height=int(min(900, max(260, 100 + 900 * z.shape[0] / z.shape[1]))),
                  margin=dict(l=50, r=COLORBAR_MARGIN + 10, t=60, b=10))  # head numbers on top
    fig.update_layout(plot_bgcolor="#0e1117")
    return fig


def head_grids(panels: Sequence[tuple[np.ndarray, str, str]], selected: tuple[int, int] | None = None,
               colorscale: list[str] | str = VIRIDIS) -> go.Figure:
    """Statistics of every head side by side, one layer x head grid per statistic, in one figure;
    a click on a cell of any grid selects that (layer, head) (see `clicked_head`).

    panels: (values (layers, heads), title, unit) per statistic. One figure rather than one per
    statistic: on a 2-core machine three narrow figures in columns took ~0.7 s longer to appear.
    """
    panels = list(panels)
    if not panels:
        raise ValueError("head_grids needs at least one statistic")
    shapes = {np.shape(values) for values, _, _ in panels}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every statistic needs the same (layers, heads) shape, got {sorted(shapes)}")
    layers, heads = next(iter(shapes))
    spacing = 0.09
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for _, title, _ in panels],
                        horizontal_spacing=spacing)
    width = (1 - spacing * (len(panels) - 1)) / len(panels)
    layer_of, head_of = (a.ravel() for a in np.mgrid[0:layers, 0:heads])
    for i, (values, _, unit) in enumerate(panels):
        values = np.asarray(values, dtype=float)
        right = i * (width + spacing) + width  # the panel's right edge, where its colour bar goes
        fig.add_trace(go.Heatmap(z=values, x=list(range(heads)), y=list(range(layers)), colorscale=colorscale,
                                 hoverinfo="skip", colorbar=dict(title=unit, x=right + 0.005, xanchor="left",
                                                                 thickness=10, len=0.85)),
                      row=1, col=i + 1)
        text = [f"layer {lay}, head {h}<br>{unit} {values[lay, h]:.4g}" for lay, h in zip(layer_of, head_of)]
        _click_targets(fig, layer_of, head_of, x=head_of, y0=layer_of - 0.5, width=1, height=1,
                       hovertext=text, col=i + 1)
        fig.update_xaxes(title="head", dtick=1, range=[-0.5, heads - 0.5], row=1, col=i + 1)
        fig.update_yaxes(title="layer" if i == 0 else None, dtick=1, range=[layers - 0.5, -0.5],
                         autorange=False, row=1, col=i + 1)
        if selected is not None and 0 <= selected[0] < layers and 0 <= selected[1] < heads:
            suffix = "" if i == 0 else str(i + 1)
            fig.add_shape(type="rect", xref=f"x{suffix}", yref=f"y{suffix}", line=dict(color="#22d3ee", width=2),
                          x0=selected[1] - 0.5, x1=selected[1] + 0.5, y0=selected[0] - 0.5, y1=selected[0] + 0.5)
    for annotation in fig.layout.annotations:  # the subplot titles
        annotation.font = dict(size=13)
    # the colour bars stand beside their panels, only the last one's labels past the plot
    return _layout(fig, "", height=330, margin=dict(l=56, r=80, t=40, b=56))


def layer_cost_bars(layers: Sequence[dict], title: str = "FLOPs per layer (analytic)") -> go.Figure:
    """Stacked bars per layer: attention core, Q/K/V and O projections, MLP (`layer_costs` rows)."""
    layers = list(layers)
    fig = go.Figure()
    for key, label, colour in COST_PARTS:
        values = [row[key] for row in layers]
        shares = [row[key] / row["total_flops"] if row["total_flops"] else 0.0 for row in layers]
        fig.add_trace(go.Bar(
            x=[row["layer"] for row in layers], y=values, name=label, marker_color=colour,
            customdata=shares,
            hovertemplate=f"layer %{{x}}<br>{label}: %{{y:.4s}}FLOP (%{{customdata:.1%}} of the layer)<extra></extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="layer", dtick=1)
    fig.update_yaxes(title="FLOPs (matmul, 2 per multiply-add)")
    return _layout(fig, title, height=340)


def module_time_bars(timing: dict, title: str | None = None) -> go.Figure:
    """Measured median time of each layer's attention and MLP modules (`time_modules`)."""
    rows = timing["layers"]
    fig = go.Figure()
    for key, label, colour in (("attention_ms", "attention module", "#ef4444"), ("mlp_ms", "MLP", "#3b82f6")):
        fig.add_trace(go.Bar(x=[r["layer"] for r in rows], y=[r[key] for r in rows], name=label,
                             marker_color=colour,
                             hovertemplate=f"layer %{{x}}<br>{label}: %{{y:.3g}} ms<extra></extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="layer", dtick=1)
    fig.update_yaxes(title="ms (median)")
    if title is None:
        title = (f"measured time per module · forward {timing['forward_ms']:.3g} ms, of which "
                 f"{timing['other_ms']:.3g} ms outside them ({timing['timer']})")
    return _layout(fig, title, height=340)


KV_LINES = (("bytes", "as configured", "#10b981", "solid"), ("bytes_mha", "MHA (a K/V head per query head)",
            "#ef4444", "dash"), ("bytes_mqa", "MQA (one K/V head)", "#8b5cf6", "dot"),
            ("bytes_without_window", "without the sliding window", "#f59e0b", "dashdot"))


def kv_cache_chart(rows: Sequence[dict], title: str = "KV cache for decoding",
                   current: int | None = None) -> go.Figure:
    """KV-cache bytes against context length (`kv_cache_curve` rows), log-log: the model as
    configured, and what MHA, MQA and (for windowed models) no window would cost."""
    rows = sorted(rows, key=lambda r: r["context"])
    rows = [r for r in rows if r["context"] > 0]
    windowed = any(r.get("window") for r in rows)
    fig = go.Figure()
    for key, label, colour, dash in KV_LINES:
        if key == "bytes_without_window" and not windowed:
            continue
        fig.add_trace(go.Scatter(
            x=[r["context"] for r in rows], y=[r[key] for r in rows], mode="lines+markers", name=label,
            line=dict(color=colour, dash=dash),
            hovertemplate=f"{label}<br>context %{{x:,}} tokens<br>%{{y:.3s}}B<extra></extra>"))
    contexts = [r["context"] for r in rows]
    if current:
        fig.add_vline(x=math.log10(current), line=dict(color="#f8fafc", width=1),
                      annotation_text="this text", annotation_position="bottom right")
        contexts.append(current)
    # an explicit range: the mark's log10 position must not stretch the axis
    span = [math.log10(min(contexts)) - 0.05, math.log10(max(contexts)) + 0.05] if contexts else None
    fig.update_xaxes(title="context length (tokens)", type="log", range=span)
    fig.update_yaxes(title="bytes (keys + values, every layer)", type="log")
    return _layout(fig, title, height=340)


def implementation_bars(rows: Sequence[dict], title: str = "the same model under each attention "
                        "implementation") -> go.Figure:
    """Median forward time per implementation (`compare_implementations` rows), p10–p90 as error
    bars; an implementation that could not run is named with its reason instead of a bar."""
    rows = list(rows)
    ok = [r for r in rows if r.get("ok")]
    fig = go.Figure(go.Bar(
        x=[r["impl"] for r in ok], y=[r["median_ms"] for r in ok],
        marker_color=["#ef4444", "#f59e0b", "#10b981"][:len(ok)] if len(ok) <= 3 else None,
        error_y=dict(type="data", symmetric=False, array=[r["p90_ms"] - r["median_ms"] for r in ok],
                     arrayminus=[r["median_ms"] - r["p10_ms"] for r in ok], thickness=1),
        customdata=[[r["first_ms"], r["max_abs_diff"]] for r in ok],
        hovertemplate="%{x}<br>median %{y:.4g} ms<br>first call %{customdata[0]:.4g} ms "
                      "(includes compiling)<br>max |Δ| vs the first %{customdata[1]:.2g}<extra></extra>"))
    failed = [r for r in rows if not r.get("ok")]
    for i, r in enumerate(failed):
        fig.add_annotation(text=f"{r['impl']}: cannot run: {r.get('reason', '')[:120]}", showarrow=False,
                           xref="paper", yref="paper", x=0, y=1 - 0.08 * i, xanchor="left",
                           font=dict(color="#fca5a5", size=11))
    fig.update_xaxes(title="attn_implementation", type="category",
                     categoryarray=[r["impl"] for r in rows], categoryorder="array")
    fig.update_yaxes(title="forward ms (median)")
    return _layout(fig, title, height=320)
