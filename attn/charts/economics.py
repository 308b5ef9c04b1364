"""The Economics page: prices per token (a prefill, a decode step beside its floor, a training
step), the quality/cost frontier, the longest context that fits."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import plotly.graph_objects as go

from attn.charts.curves import metric_curve
from attn.charts.style import _layout, color_of

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


def decode_cost_chart(rows: Iterable[dict], title: str = "decode: $ per million generated tokens",
                      height: int = 360) -> go.Figure:
    """A decode step's $/Mtok against the context, a line per variant, with the bandwidth floor
    of the same steps as a dashed line of the variant's colour beneath it. rows: dicts with
    variant, context, usd_per_mtok and floor_usd_per_mtok (None where no floor was saved)
    (`regime_costs.DecodeCost` as a dict)."""
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    fig = go.Figure()
    for variant, pts in by_variant.items():
        pts = sorted(pts, key=lambda r: r["context"])
        color = color_of(variant)
        fig.add_trace(go.Scatter(
            x=[r["context"] for r in pts], y=[r["usd_per_mtok"] for r in pts], mode="lines+markers",
            name=f"{variant} (measured)", line=dict(color=color, width=2), marker=dict(size=8, color=color),
            hovertemplate=f"{variant}<br>context %{{x:,}}<br>$%{{y:.4g}} per Mtok, measured<extra></extra>"))
        floor = [r for r in pts if r.get("floor_usd_per_mtok") is not None]
        if floor:
            fig.add_trace(go.Scatter(
                x=[r["context"] for r in floor], y=[r["floor_usd_per_mtok"] for r in floor], mode="lines",
                name=f"{variant} (bandwidth floor)", line=dict(color=color, width=1.5, dash="dash"),
                hovertemplate=(f"{variant}<br>context %{{x:,}}<br>$%{{y:.4g}} per Mtok at the floor"
                               "<extra></extra>")))
    fig.update_xaxes(title="context (cached keys)", type="log")
    fig.update_yaxes(title="$ per million generated tokens", type="log", exponentformat="power")
    return _layout(fig, title, height=height)


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
