"""What every figure shares: the colour scales, one colour per variant, margins sized for what a
figure holds, and the dark layout."""
from __future__ import annotations

import math

import plotly.colors
import plotly.graph_objects as go

from attn import variants

# Streamlit's front end swaps colours #000001..#000032 for its theme's (they are its template's
# placeholders), and Inferno starts at #000004: nudge it, or zero weights turn light purple
INFERNO = ["#010005" if c == "#000004" else c for c in plotly.colors.sequential.Inferno]
GREYS = list(plotly.colors.sequential.Greys)
VIRIDIS = list(plotly.colors.sequential.Viridis)

# one colour per variant, stable across pages: each variant declares its own
color_of = variants.color_of

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
