"""The Models page: every head of every layer as one mosaic, statistics per head, FLOPs and time
per layer, the KV cache against context, and the attention implementations side by side."""
from __future__ import annotations

import base64
import io
import math
from typing import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from attn.charts.maps import MAX_CELLS
from attn.charts.style import COLORBAR_MARGIN, INFERNO, VIRIDIS, _layout, fitted_margin

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


# -- serving and training (attn.models.serving_curve, attention_train_step) ----------------------
def _measured(points: Sequence[dict], key: str) -> list[dict]:
    return sorted((p for p in points if p.get("status") == "ok"), key=lambda p: p[key])


def _spread(rows: list[dict], name: str) -> dict:
    """p10–p90 as asymmetric error bars around the median `name`."""
    return dict(type="data", symmetric=False, thickness=1,
                array=[r[f"{name}_p90"] - r[name] for r in rows], arrayminus=[r[name] - r[f"{name}_p10"] for r in rows])


def log_ticks(values: Sequence[float]) -> list[float]:
    """1-2-5 ticks across `values` (a little past each end) for a log axis: labelled in full, where
    plotly's own ticks write the 2s and 5s between decades as single digits ("2", "5")."""
    kept = [v for v in values if v and v > 0]
    if not kept:
        return []
    lo, hi = min(kept) / 1.5, max(kept) * 1.5
    return [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]


def _ms_values(rows: list[dict], names: Sequence[str]) -> list[float]:
    return [r.get(f"{name}{end}") or 0.0 for r in rows for name in names for end in ("", "_p10", "_p90")]


SERVING_LINES = (("prefill_ms", "time to first token (prefill + LM head)", "#f59e0b"),
                 ("decode_ms", "decode, per token", "#10b981"))


def serving_chart(points: Sequence[dict], title: str = "time to first token and per-token decode") -> go.Figure:
    """TTFT and per-token decode time against context, log-log, medians with p10–p90 bars
    (`serving_curve` points; those without numbers are left out)."""
    rows = _measured(points, "context")
    fig = go.Figure()
    for key, label, colour in SERVING_LINES:
        fig.add_trace(go.Scatter(
            x=[r["context"] for r in rows], y=[r[key] for r in rows], mode="lines+markers", name=label,
            line=dict(color=colour), error_y=_spread(rows, key),
            hovertemplate=f"{label}<br>context %{{x:,}} tokens<br>%{{y:.4g}} ms (median)<extra></extra>"))
    fig.update_xaxes(title="context (tokens)", type="log")
    fig.update_yaxes(title="ms (median, p10–p90)", type="log", tickmode="array",
                     tickvals=log_ticks(_ms_values(rows, [key for key, _, _ in SERVING_LINES])))
    return _layout(fig, title, height=340)


CACHE_LINES = (("cache_bytes", "measured: the cache's tensors", "#10b981", "solid"),
               ("cache_held_bytes", "measured: storage they keep alive", "#ef4444", "dot"),
               ("cache_bytes_predicted", "predicted (kv_cache_curve)", "#f8fafc", "dash"))


def kv_cache_measured_chart(points: Sequence[dict], title: str = "KV cache after the prefill: measured "
                            "and predicted") -> go.Figure:
    """The cache's bytes after the prefill against context, log-log: its tensors, the storage they
    hold (drawn only where it differs) and the prediction at the model's dtype (`serving_curve`)."""
    rows = _measured(points, "context")
    fig = go.Figure()
    for key, label, colour, dash in CACHE_LINES:
        if key == "cache_held_bytes" and all(r[key] == r["cache_bytes"] for r in rows):
            continue
        if key == "cache_bytes_predicted" and all(r[key] is None for r in rows):
            continue
        fig.add_trace(go.Scatter(
            x=[r["context"] for r in rows], y=[r[key] for r in rows], mode="lines+markers", name=label,
            line=dict(color=colour, dash=dash), customdata=[r["cached_tokens"] for r in rows],
            hovertemplate=f"{label}<br>context %{{x:,}}<br>%{{y:,}} B<br>%{{customdata:,}} tokens a layer"
                          "<extra></extra>"))
    fig.update_xaxes(title="context (tokens)", type="log")
    fig.update_yaxes(title="bytes (keys + values, every layer)", type="log")
    return _layout(fig, title, height=340)


TRAIN_LINES = (("forward_ms", "forward", "#3b82f6", "dot"), ("backward_ms", "backward", "#ef4444", "dot"),
               ("step_ms", "forward + backward", "#f8fafc", "solid"))


def train_step_chart(points: Sequence[dict], title: str = "training step of the attention layers") -> go.Figure:
    """Two panels against sequence length, log-log: the step's time (forward, backward, the two
    together with p10–p90 bars) and its peak memory beside the estimate checked before it ran
    (`attention_train_step` points)."""
    rows = _measured(points, "seq")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["time (median)", "peak memory of the step"])
    seqs = [r["seq"] for r in rows]
    for key, label, colour, dash in TRAIN_LINES:
        fig.add_trace(go.Scatter(
            x=seqs, y=[r[key] for r in rows], mode="lines+markers", name=label, line=dict(color=colour, dash=dash),
            error_y=_spread(rows, key) if key == "step_ms" else None,
            hovertemplate=f"{label}<br>seq %{{x:,}}<br>%{{y:.4g}} ms<extra></extra>"), row=1, col=1)
    for key, label, colour, dash in (("peak_bytes", "peak, measured", "#10b981", "solid"),
                                     ("estimate_bytes", "estimate checked before running", "#a3a3a3", "dash")):
        kept = [r for r in rows if r.get(key)]
        fig.add_trace(go.Scatter(
            x=[r["seq"] for r in kept], y=[r[key] for r in kept], mode="lines+markers", name=label,
            line=dict(color=colour, dash=dash), hovertemplate=f"{label}<br>seq %{{x:,}}<br>%{{y:.3s}}B<extra></extra>"),
            row=1, col=2)
    for col, unit in ((1, "ms"), (2, "bytes")):
        fig.update_xaxes(title="sequence length (tokens)", type="log", row=1, col=col)
        fig.update_yaxes(title=unit, type="log", row=1, col=col)
    for annotation in fig.layout.annotations:  # the panel titles
        annotation.font = dict(size=13)
    fig.update_yaxes(tickmode="array", tickvals=log_ticks(_ms_values(rows, [key for key, *_ in TRAIN_LINES])),
                     row=1, col=1)
    # the panel titles sit just above the plots: the figure's title needs a row of its own
    return _layout(fig, title, height=380, margin=fitted_margin(fig, 380, top=76))
