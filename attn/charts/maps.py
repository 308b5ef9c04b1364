"""Attention maps and mask patterns as heatmaps (the Playground and the Scaling page)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from attn.charts.style import CHAR_PX, GREYS, INFERNO, _layout, fitted_margin

LABELLED_TOKENS = 64  # a map with more tokens than this labels only some of them on its axes
MAX_CELLS = 512  # a heatmap never draws more than 512 x 512 cells (~1.4 MB as binary float32)


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


def cache_strip(values: np.ndarray, q_edges: Sequence[int], k_edges: Sequence[int], offset: int,
                title: str = "the new tokens over the cache", log_scale: bool = False,
                mask: bool = False) -> go.Figure:
    """A decode step's map: the new tokens' rows (one for plain decoding) over every cached key,
    as a strip as wide as the cache. `offset` is the first new token's position in the cache
    (context - new_tokens), so the rows are named by position. With `mask`, the values are the
    share of pairs visible (a pooled mask), drawn light on dark as mask_heatmap draws them.

    Key ranges are category labels like the square maps' (so z stays a binary float32 array);
    a few of them are ticked, by the key each starts at."""
    values = _check_size(values)
    y = _ranges([int(e) + offset for e in q_edges])
    x = _ranges(k_edges)
    if mask:
        trace = go.Heatmap(z=values, x=x, y=y, zmin=0, zmax=1, colorscale=GREYS[::-1],
                           colorbar=dict(title="visible"),
                           hovertemplate="token %{y} × keys %{x}<br>%{z:.0%} of pairs visible<extra></extra>")
    else:
        z = np.log10(np.maximum(values, 1e-6)).astype(np.float32) if log_scale else values
        what = "log10 weight" if log_scale else "weight"
        trace = go.Heatmap(z=z, x=x, y=y, colorscale=INFERNO, colorbar=dict(title=what),
                           hovertemplate=f"token %{{y}} × keys %{{x}}<br>{what} %{{z:.4g}}<extra></extra>")
    fig = go.Figure(trace)
    ticked = _every_nth(x, 6)
    fig.update_xaxes(title="cached key", type="category", tickmode="array", tickvals=ticked,
                     ticktext=[label.split("–")[0] for label in ticked], tickangle=0)
    shown_y = y if len(y) <= 16 else _every_nth(y, 8)
    fig.update_yaxes(autorange="reversed", title="new token", type="category", tickmode="array",
                     tickvals=shown_y)
    height = min(420, 190 + 18 * len(y))
    margin = fitted_margin(fig, height)
    margin.update(l=50 + CHAR_PX * max(map(len, shown_y), default=0))
    return _layout(fig, title, height=height, margin=margin)
