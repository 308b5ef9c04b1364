"""The planner's figures: plans as points of cost against quality, the dominated ones grey."""
from __future__ import annotations

from typing import Iterable

import plotly.colors
import plotly.graph_objects as go

from attn.charts.economics import DOMINATED_COLOR, _padded
from attn.charts.style import _layout

# plans are not variants (charts.color_of): a colour by position, the base in white
PLAN_COLORS = plotly.colors.qualitative.Set2
BASE_COLOR = "#f8fafc"

def plan_frontier_chart(plans: Iterable[dict], cost_label: str, quality_label: str = "mean cosine to the base",
                        title: str = "", height: int = 380) -> go.Figure:
    """Quality against cost, a marker per plan: the frontier in colour and joined by a step line,
    dominated plans grey with the plan that beats them. plans: dicts with label, cost, quality
    (higher is better), dominated and dominated_by (economics.frontier on 1 - quality and cost)."""
    points = list(plans)
    fig = go.Figure()
    front = sorted((p for p in points if not p["dominated"]), key=lambda p: (p["cost"], -p["quality"]))
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[p["cost"] for p in front], y=[p["quality"] for p in front], mode="lines",
                                 line=dict(color="#e2e8f0", width=1, dash="dot", shape="hv"),
                                 name="frontier", hoverinfo="skip"))
    for i, p in enumerate(points):
        beaten = p["dominated"]
        color = DOMINATED_COLOR if beaten else BASE_COLOR if p.get("base") else PLAN_COLORS[i % len(PLAN_COLORS)]
        fig.add_trace(go.Scatter(
            x=[p["cost"]], y=[p["quality"]], mode="markers+text", text=[p["label"]], textposition="top center",
            name=p["label"] + (" (dominated)" if beaten else ""), textfont=dict(color=color),
            marker=dict(size=12, color=color, opacity=0.45 if beaten else 1.0, line=dict(width=1, color="#0f172a")),
            hovertemplate=(f"{p['label']}<br>{cost_label} %{{x:.4g}}<br>{quality_label} %{{y:.4f}}"
                           + (f"<br>dominated by {p['dominated_by']}" if beaten else "<br>on the frontier")
                           + "<extra></extra>")))
    costs = [p["cost"] for p in points]
    log = bool(costs) and min(costs) > 0
    fig.update_xaxes(title=cost_label, type="log" if log else "linear", range=_padded(costs, log))
    fig.update_yaxes(title=quality_label)
    fig.update_layout(showlegend=False)  # every marker carries its name
    return _layout(fig, title or f"quality against {cost_label}", height=height)
