"""The Models page's work: models behind st.cache_resource, their maps and head statistics behind
the caches, timings through the job runner (one job per question, re-attached after a rerun)."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import partial
from typing import Any, Callable

import numpy as np
import streamlit as st

from attn import charts, tasks
from attn.maps import head_stats, pooled_map, stats_from_weights
from attn.models import (Capture, LoadedModel, QKVCapture, capture_attention, capture_qkv, encode,
                         load_model, rollout)
from ui import follow

LONG_INPUT = 256  # tokens; longer inputs are drawn from q and k, pooled, never T x T per layer
VIEW_CELLS = 64  # cells per side of each small map of the model view
HEAD_CELLS = 256  # cells per side of the head view of a long input
STATS = {  # HeadStats field: (title, colour-bar label)
    "entropy_bits": ("entropy: high is spread out", "bits"),
    "mean_distance": ("mean distance: how far a head looks", "tokens"),
    "sink_mass": ("sink mass: weight on the first token", "weight"),
}
LAYER, HEAD = "md_layer", "md_head"  # the open head: widget keys of the head view


@st.cache_resource(max_entries=4, show_spinner=False)
def model(source: str) -> LoadedModel:
    """The model with eager attention (the one that returns weights), loaded once per process."""
    return load_model(source, "eager")


@st.cache_resource(max_entries=4, show_spinner=False)
def _captured(source: str, text: str, max_tokens: int) -> Capture | QKVCapture:
    """Short inputs: every layer's weights as transformers returns them. Long ones: q, k per layer."""
    loaded = model(source)
    _, tokens = encode(loaded, text, max_tokens)
    if len(tokens) <= LONG_INPUT:
        return capture_attention(loaded, text, max_tokens=max_tokens)
    return capture_qkv(loaded, text, max_tokens=max_tokens)


def _edges(n: int, cells: int) -> np.ndarray:
    """The near-equal runs attn.maps uses: boundaries at floor(i * n / cells)."""
    return (np.arange(cells + 1) * n) // cells


def _pooled(weights: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(..., T, T) weights to (..., c, c) as attn.maps pools them: a mean over each cell's queries
    of the total weight on its keys, so pooled rows still sum to 1."""
    n = weights.shape[-1]
    if n <= cells:
        return weights, np.arange(n + 1)
    edges = _edges(n, cells)
    keys = np.add.reduceat(weights, edges[:-1], axis=-1)
    rows = np.add.reduceat(keys, edges[:-1], axis=-2)
    return rows / np.diff(edges)[:, None], edges


@st.cache_data(max_entries=16, show_spinner=False)
def model_views(source: str, text: str, max_tokens: int) -> dict[str, Any]:
    """What the model view, the rollout and the statistics grids draw, for one text.

    {tokens, seq_len, exact (weights, not pooled), route (in words), edges, maps (L, H, c, c),
    stats {field: (L, H)}, rollout (n, n), rollout_edges}.
    """
    cap = _captured(source, text, max_tokens)
    if isinstance(cap, Capture):
        maps, edges = _pooled(cap.attentions, VIEW_CELLS)
        grid = [[stats_from_weights(cap.attentions[layer, head], head=head) for head in range(cap.heads)]
                for layer in range(cap.layers)]
        roll, roll_edges = rollout(cap.attentions), np.arange(cap.seq_len + 1)
        route = "exact weights from transformers (output_attentions, eager)"
    else:
        n = len(cap.tokens)
        per_layer = []
        for item in cap.layers:
            heads = item.spec.heads
            per_layer.append([pooled_map(item.q, item.k, item.spec, item.variant, 0, h, VIEW_CELLS).values
                              for h in range(heads)])
        maps, edges = np.asarray(per_layer, dtype=np.float32), _edges(n, min(n, VIEW_CELLS))
        grid = [head_stats(item.q, item.k, item.spec, item.variant) for item in cap.layers]
        # rollout of the pooled maps: the same edges on both axes keep rows stochastic, so it is
        # the rollout of a coarse-grained model; approximate, and said so on the page
        roll, roll_edges = rollout(maps), edges
        route = (f"{n} tokens is more than {LONG_INPUT}: q and k captured with hooks (sdpa run), "
                 f"maps mean-pooled by attn.maps")
    stats = {name: np.array([[getattr(s, name) for s in row] for row in grid], dtype=float)
             for name in ("entropy_bits", "entropy_normalised", "mean_distance", "sink_mass",
                          "diagonal_mass", "keys_for_90")}
    return {"tokens": list(cap.tokens), "seq_len": len(cap.tokens), "exact": isinstance(cap, Capture),
            "route": route, "edges": np.asarray(edges).tolist(), "maps": np.asarray(maps, dtype=np.float32),
            "stats": stats, "rollout": np.asarray(roll, dtype=np.float32), "rollout_edges": np.asarray(roll_edges).tolist()}


@st.cache_data(max_entries=64, show_spinner=False)
def head_view(source: str, text: str, max_tokens: int, layer: int, head: int) -> dict[str, Any]:
    """One head large: exact weights for short inputs, pooled to HEAD_CELLS for long ones."""
    cap = _captured(source, text, max_tokens)
    if isinstance(cap, Capture):
        n = cap.seq_len
        return {"values": cap.attentions[layer, head], "edges": list(range(n + 1)), "exact": True}
    item = cap.layer(layer)
    pm = pooled_map(item.q, item.k, item.spec, item.variant, 0, head, HEAD_CELLS)
    return {"values": pm.values, "edges": pm.q_edges.tolist(), "exact": pm.exact}


def token_labels(tokens: list[str]) -> list[str]:
    """Axis labels that stay unique when a token repeats (a category axis merges equal labels)."""
    return [f"{i} {t}" for i, t in enumerate(tokens)]


# -- clicking a grid opens a head ------------------------------------------------------------
def open_head(layer: int, head: int) -> None:
    st.session_state[LAYER], st.session_state[HEAD] = int(layer), int(head)


def _on_click(chart_key: str) -> None:
    """on_select callback: runs before the rerun, so the head view's widgets can still be set."""
    state = st.session_state.get(chart_key) or {}
    for point in state.get("selection", {}).get("points", []):
        picked = charts.clicked_head(point)
        if picked is not None:
            open_head(*picked)
            return


def clickable(chart_key: str) -> dict:
    """st.plotly_chart arguments that open the clicked head (figures from charts.model_view and
    charts.head_grids)."""
    return {"on_select": partial(_on_click, chart_key), "selection_mode": "points"}


def head_notes(stats: dict[str, np.ndarray]) -> np.ndarray:
    """One hover line per head for the model view."""
    layers, heads = stats["entropy_bits"].shape
    notes = np.empty((layers, heads), dtype=object)
    for layer in range(layers):
        for head in range(heads):
            notes[layer, head] = (f"entropy {stats['entropy_bits'][layer, head]:.2f} bits · distance "
                                  f"{stats['mean_distance'][layer, head]:.1f} · sink {stats['sink_mass'][layer, head]:.2f}")
    return notes


# -- timings in the worker ---------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _results() -> dict:
    """Every session's finished model jobs, by question. A reload or a second tab shows what was
    measured rather than measuring again while the browser draws the page: on a small machine the
    two fight for the cores, which slows the drawing and inflates the times."""
    return OrderedDict()


@st.cache_resource(show_spinner=False)
def _running() -> dict:
    """Every session's model jobs still running, by question, for ui.follow: a second tab follows
    the job the first one started."""
    return {}


KEPT_RESULTS = 64  # finished jobs kept; each is a few kB of timings


def job_result(key: tuple, fn: Callable, *args: Any, title: str, start: bool = True,
               cancel: bool = True) -> Any | None:
    """The result of `fn(*args)` run once in the worker per key, for all sessions; waits with a
    progress bar (ui.follow).

    A job still running (from an interrupted rerun or another session) is waited on again rather
    than submitted twice.
    Returns None when not started (start False) or failed (the error is shown).
    """
    store = _results()
    if key in store:
        return store[key]
    question = "md_job_" + hashlib.sha1(repr(key).encode()).hexdigest()[:12]
    if start:
        follow.start(question, follow.job(fn, *args, kind="model", title=title), store=_running())
    view = follow.follow(question, title, cancel=cancel, store=_running())
    if view is None or not view.ok:
        return None
    store[key] = view.result
    for old in list(store)[:max(0, len(store) - KEPT_RESULTS)]:
        store.pop(old, None)
    return view.result


def module_timing(source: str, text: str, max_tokens: int, device: str, again: bool = False) -> dict | None:
    key = ("time_modules", source, text, max_tokens, device)
    if again:
        _results().pop(key, None)
    # measured on every visit, so a cancelled timing would start again on the next rerun: no Cancel
    return job_result(key, tasks.model_timing_task, source, text, max_tokens, 5, device,
                      title="time per module", cancel=False)


def implementations(source: str, text: str, max_tokens: int, device: str, start: bool) -> list[dict] | None:
    key = ("implementations", source, text, max_tokens, device)
    if start:  # measure again; a running job is kept
        _results().pop(key, None)
    return job_result(key, tasks.model_implementations_task, source, text, max_tokens, 3, device,
                      title="eager · sdpa · flex_attention", start=start)


# -- serving and training, measured on request -------------------------------------------------
LENGTH_CHOICES = (128, 256, 512, 1024, 2048, 4096, 8192)
SERVING_STEPS = 8  # decode steps timed at each context, after one warm-up step
BUDGET_S = 60.0  # each curve stops before a point that would run past this


def lengths_up_to(longest: int) -> list[int]:
    """The doubling lengths from 128 to `longest`: the points of a curve."""
    return [n for n in LENGTH_CHOICES if n <= longest] or [longest]


def serving(source: str, longest: int, device: str, start: bool) -> dict | None:
    """TTFT, per-token decode and the KV cache's bytes against context (tasks.model_serving_task)."""
    key = ("serving", source, longest, device)
    if start:  # measure again; a running job is kept
        _results().pop(key, None)
    return job_result(key, tasks.model_serving_task, source, lengths_up_to(longest), SERVING_STEPS, BUDGET_S,
                      device, title="time to first token · decode", start=start)


def train_step(source: str, longest: int, device: str, start: bool) -> dict | None:
    """The attention layers' training step against length (tasks.model_train_step_task)."""
    key = ("train_step", source, longest, device)
    if start:
        _results().pop(key, None)
    return job_result(key, tasks.model_train_step_task, source, lengths_up_to(longest), BUDGET_S, device,
                      title="attention layers' train step", start=start)
