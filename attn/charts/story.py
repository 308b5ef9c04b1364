"""The Story page's figures, one a chapter (attn.story): data in (a chapter's measured result),
figure out. Measured points are solid; the cost model is dashed and says "model" in its name;
figures from the H100 anchor run say "not measured here"."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from attn.charts.style import INFERNO, VIRIDIS, _layout, color_of
from attn.readable import usd

HEIGHT = 420
GIB = 1 / 2**30  # memory axes in GiB: plotly's SI ticks would write 10 GB as "10B"
SHARING_COLORS = {"MHA": "#ef4444", "GQA": "#f59e0b", "MQA": "#22c55e"}
HERE_COLOR, H100_COLOR = "#38bdf8", "#a78bfa"
TITLES = {"dense": "plain attention (dense)", "sdpa": "fused kernel (sdpa)"}


def _panels(titles: tuple[str, str], spacing: float = 0.1) -> go.Figure:
    return make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=spacing)


def wall_chart(r: dict, height: int = HEIGHT) -> go.Figure:
    """Memory and latency against length: measured dots, the cost model dashed up to each
    variant's memory wall, and the memory one call may use."""
    fig = _panels(("memory a call needs", "time per call"))
    for name in ("dense", "sdpa"):
        color, title = color_of(name), TITLES[name]
        seen = [p for p in r["measured"] if p["variant"] == name]
        model = [p for p in r["model"] if p["variant"] == name]
        for col, metric, scale in ((1, "peak_bytes", GIB), (2, "latency_ms", 1e-3)):
            fig.add_trace(go.Scatter(
                x=[p["seq"] for p in seen], y=[p[metric] * scale for p in seen], mode="lines+markers",
                name=f"{title}, measured", legendgroup=name, showlegend=col == 1,
                line=dict(color=color, width=3), marker=dict(size=9)), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=[p["seq"] for p in model], y=[p[metric] * scale for p in model if p[metric] is not None],
                mode="lines",
                name=f"{title}, cost model (not measured)", legendgroup=name + "_model",
                showlegend=col == 1, line=dict(color=color, dash="dash", width=2)), row=1, col=col)
        wall = r["walls"].get(name)
        if wall:
            fig.add_trace(go.Scatter(
                x=[wall], y=[r["free_bytes"] * GIB], mode="markers+text", text=[f"wall: {wall:,}"],
                textposition="top left" if name == "sdpa" else "top right", showlegend=False,
                marker=dict(symbol="x", size=13, color=color), textfont=dict(color=color),
                hovertemplate=f"{title}: the memory wall at %{{x:,}} tokens (cost model)<extra></extra>"),
                row=1, col=1)
    fig.add_hline(y=r["free_bytes"] * GIB, line=dict(color="#94a3b8", dash="dot"), row=1, col=1)
    # the line's name as a text point: an hline annotation takes y as log10 on a log axis
    fig.add_trace(go.Scatter(x=[min(p["seq"] for p in r["measured"])], y=[r["free_bytes"] * GIB],
                             mode="text", text=["memory one call may use"], textposition="top right",
                             textfont=dict(color="#94a3b8"), showlegend=False, hoverinfo="skip"), row=1, col=1)
    fig.update_xaxes(type="log", title="tokens")
    fig.update_yaxes(type="log", title="GiB", row=1, col=1)
    fig.update_yaxes(type="log", title="seconds", row=1, col=2)
    return _layout(fig, "", height)


def heads_chart(r: dict, height: int = HEIGHT) -> go.Figure:
    """Left: every head's tokens for 90% of its weight (layer × head). Right: the sharpest head's
    weights over the sentence's tokens."""
    sharp = r["sharpest"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.14,
                        subplot_titles=(f"tokens holding 90% of each head's weight (of {len(r['tokens'])})",
                                        f"the sharpest head: layer {sharp['layer']}, head {sharp['head']}"))
    keys = r["keys_for_90"]
    fig.add_trace(go.Heatmap(
        z=keys, x=list(range(len(keys[0]))), y=list(range(len(keys))), colorscale=VIRIDIS,
        text=[[f"{k:.0f}" for k in row] for row in keys], texttemplate="%{text}",
        colorbar=dict(title="tokens", x=0.4, len=0.9),
        hovertemplate="layer %{y}, head %{x}: %{z:.1f} tokens<extra></extra>"), row=1, col=1)
    tokens = [f"{i}:{t}" for i, t in enumerate(r["tokens"])]  # a word twice is two positions
    fig.add_trace(go.Heatmap(
        z=sharp["weights"], x=tokens, y=tokens, colorscale=INFERNO, showscale=False,
        hovertemplate="%{y} looks at %{x}: %{z:.2f}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title="head", dtick=1, row=1, col=1)
    fig.update_yaxes(title="layer", dtick=1, autorange="reversed", row=1, col=1)
    fig.update_xaxes(title="looks at", tickangle=-60, tickfont=dict(size=9), row=1, col=2)
    fig.update_yaxes(title="token", autorange="reversed", tickfont=dict(size=9), row=1, col=2)
    fig = _layout(fig, "", height + 80, margin=dict(l=70, r=20, t=40, b=110))
    fig.update_layout(showlegend=False)
    return fig


def sparsity_chart(r: dict, height: int = HEIGHT) -> go.Figure:
    """How far each layout moves the output against the share of pairs it computes; exact
    attention is the point at 100% and 0."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[100], y=[0], mode="markers+text", text=["exact attention"],
                             textposition="top left", name="exact",
                             marker=dict(size=14, color=color_of("dense"), symbol="star")))
    for name in ("sliding_window", "block_sparse"):
        rows = [row for row in r["layouts"] if row["variant"] == name]
        fig.add_trace(go.Scatter(
            x=[100 * row["pairs"] / row["full_pairs"] for row in rows],
            y=[100 * row["output_moved"] for row in rows], mode="markers+text+lines",
            text=[row["label"] for row in rows], textposition="top center",
            name="sliding window" if name == "sliding_window" else "block sparse",
            line=dict(color=color_of(name), dash="dot"), marker=dict(size=13, color=color_of(name)),
            hovertemplate="%{text}: %{x:.0f}% of the pairs, output moved %{y:.1f}%<extra></extra>"))
    fig.update_xaxes(title="pairs computed, % of exact attention's", range=[0, 108])
    fig.update_yaxes(title="output moved, % (mean of 6 layers)", rangemode="tozero")
    return _layout(fig, f"fewer pairs, further from exact: MiniLM on a {r['tokens']}-token paragraph", height)


def sharing_chart(r: dict, height: int = HEIGHT) -> go.Figure:
    """Left: the KV cache of one sequence against context for MHA, GQA and MQA (cost model).
    Right: one decode step measured here under each."""
    fig = _panels(("KV cache of one sequence, 7B-class (cost model, not measured)",
                   f"one decode step at {r['step_context']:,} cached tokens (measured here)"))
    for name, color in SHARING_COLORS.items():
        pts = [p for p in r["cache"] if p["sharing"] == name]
        # each line named at its right end, in its colour: a slide has no room to read a legend
        fig.add_trace(go.Scatter(x=[p["context"] for p in pts], y=[p["cache_bytes"] / 2**30 for p in pts],
                                 mode="lines+markers+text", name=name, line=dict(color=color, dash="dash", width=3),
                                 text=[""] * (len(pts) - 1) + [name], textposition="top left",
                                 textfont=dict(color=color, size=14), showlegend=False,
                                 hovertemplate=f"{name}: %{{y:.3g}} GiB at %{{x:,}} tokens<extra></extra>"),
                      row=1, col=1)
    steps = r["steps"]
    fig.add_trace(go.Bar(x=[s["sharing"] for s in steps], y=[s["latency_ms"] for s in steps],
                         marker_color=[SHARING_COLORS[s["sharing"]] for s in steps], showlegend=False,
                         text=[f"{s['latency_ms']:.3g} ms" for s in steps], textposition="outside",
                         hovertemplate="%{x}: %{y:.3g} ms<extra></extra>"), row=1, col=2)
    fig.update_xaxes(type="log", title="context (tokens)", tickvals=[p["context"] for p in r["cache"]][:5],
                     ticktext=[f"{p['context'] // 1024}k" for p in r["cache"]][:5], row=1, col=1)
    fig.update_yaxes(type="log", title="GiB", row=1, col=1)
    fig.update_yaxes(title="ms per step", rangemode="tozero", row=1, col=2)
    return _layout(fig, "", height)


def train_serve_chart(r: dict, height: int = HEIGHT) -> go.Figure:
    """Dollars per million tokens, split where they go: training into forward and backward,
    serving into reading the cache (the bandwidth floor) and the rest."""
    t, d = r["train"], r["decode"]
    rows = ["training (forward + backward)", "serving (one token at a time)"]
    parts = [("forward", [t["usd_forward"], 0], "#38bdf8"), ("backward", [t["usd_backward"], 0], "#0ea5e9"),
             ("reading the cache (bandwidth floor)", [0, d["usd_floor"]], "#f59e0b"),
             ("the rest of the step", [0, d["usd_rest"]], "#fcd34d")]
    fig = go.Figure()
    for name, values, color in parts:
        fig.add_trace(go.Bar(y=rows, x=values, name=name, orientation="h", marker_color=color,
                             hovertemplate=f"{name}: $%{{x:.3g}} per million tokens<extra></extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title=f"$ per million tokens at ${r['price_per_hour']:.2f}/hour (measured here)")
    return _layout(fig, f"where the money goes: {r['length']:,} tokens, one attention layer", height)


def bill_chart(r: dict, height: int = HEIGHT) -> go.Figure:
    """$ per million tokens, prefill and decode: this device (measured) beside an H100 (anchor
    figures, not measured here; its decode is the bandwidth floor, a model)."""
    h = r["h100"]
    kinds = [f"prefill ({r['length']} tokens)", f"decode ({r['context']:,} cached)"]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=kinds, y=[r["prefill_usd"], r["decode_usd"]], name=f"this {r['device_name']} (measured)",
                         marker_color=HERE_COLOR, text=[usd(v) for v in (r["prefill_usd"], r["decode_usd"])],
                         textposition="outside"))
    fig.add_trace(go.Bar(x=kinds, y=[h["prefill_usd"], h["decode_usd"]],
                         name="H100: anchor figures, not measured here (decode: bandwidth floor, a model)",
                         marker=dict(color=H100_COLOR, pattern=dict(shape="/")),
                         text=[usd(v) for v in (h["prefill_usd"], h["decode_usd"])], textposition="outside"))
    fig.update_yaxes(type="log", title="$ per million tokens")
    fig.update_layout(barmode="group")
    return _layout(fig, "the bill: one layer's attention, per million tokens", height)
