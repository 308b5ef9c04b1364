"""Attention maps on a page: drawn in the page when they take a moment, in the worker when they
take longer (a bar with Cancel, the page serving meanwhile), and kept in the session either way,
so that a rerun shows them again without computing or submitting anything. The Playground, Compare
and Scaling draw their maps through here; what the worker gave is kept for the session, whichever
page asked (the same arguments give the same maps).

A map is named by its `MapArgs`; the figures of one are built once and reused on reruns (a cached
rerun must not rebuild 65k-cell maps)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import streamlit as st

from attn import charts, tasks, variants
from attn.masks import pooled_mask
from attn.sources import InputSource
from attn.spec import AttentionSpec
from ui import follow, results
from ui.plot import show

# maps are drawn at once below this many (query, key, head) visits or input elements drawn; above
# it, in the worker on request
AUTO_MAP_WORK = 2**27
MAPS = "pg_maps"  # the follow key of the Playground's map jobs (each page follows its own)
KEPT = "pg_maps_kept"  # what map jobs gave, by MapArgs, in the session (every page's)
KEEP = 16  # maps kept a session: a 512-cell map is a few MB of Python floats


@dataclass(frozen=True)
class MapArgs:
    """What one map is computed from: maps_json's arguments (the figure's log colour is not one)."""

    spec: AttentionSpec
    variant: str
    head: int
    size: int
    reduce: str
    temperature: float
    source: InputSource | None
    mode: str = "forward"

    @property
    def key(self) -> str:
        """The arguments as one string: what the figures' cache is keyed by."""
        source = self.source.__dict__ if self.source else None
        return json.dumps([self.spec.to_dict(), self.variant, self.head, self.size, self.reduce,
                           self.temperature, source, self.mode], sort_keys=True)


def map_work(spec: AttentionSpec) -> int:
    """The larger of the weights a map computes and the inputs it draws (one batch item's, the
    one mapped): a decode step at a context of 10^6 computes few weights but draws every cached key
    and value (tens of seconds on a CPU), so a link to it must not draw its maps unasked."""
    weights = spec.seq * spec.kv_seq * spec.heads
    inputs = (spec.heads * spec.seq + 2 * spec.kv_heads * spec.kv_seq) * spec.head_dim
    return max(weights, inputs)


def is_big(spec: AttentionSpec) -> bool:
    """Its maps take long enough to go to the worker, on request."""
    return map_work(spec) > AUTO_MAP_WORK


# -- figures ---------------------------------------------------------------------------------
@st.cache_data(max_entries=64, show_spinner=False)
def _mask_density(spec_json: str, variant: str, q_edges: tuple, k_edges: tuple):
    spec = AttentionSpec.from_dict(json.loads(spec_json))
    mask = variants.get(variant).mask(spec)
    if mask is None:  # no mask: every pair is visible
        import numpy as np

        return np.ones((len(q_edges) - 1, len(k_edges) - 1), dtype=np.float32)
    return pooled_mask(mask.fn, spec.seq, spec.kv_seq, list(q_edges), list(k_edges)).numpy()


def mask_density(spec: AttentionSpec, variant: str, q_edges: tuple, k_edges: tuple):
    return _mask_density(results.spec_key(spec), variant, q_edges, k_edges)


def mask_title(variant: str) -> str:
    if variants.get(variant).exact:
        return "mask: share of pairs computed"
    return "keys visible before the approximation"


def views_from_maps(m: dict, variant: str, head: int, reduce: str, log_scale: bool,
                    mode: str = "forward") -> dict:
    """The map figure, the mask figure and the head statistics of maps_json's dict `m` (in
    decode: strips of the new tokens over the cache), however it was computed."""
    import pandas as pd

    spec = AttentionSpec.from_dict(m["spec"])  # the inputs' (a model's text changes the shape)
    q_edges, k_edges = m["map"]["q_edges"], m["map"]["k_edges"]
    kind = "exact" if m["map"]["exact"] else reduce + "-pooled"
    density = mask_density(spec, variant, tuple(q_edges), tuple(k_edges))
    stats = pd.DataFrame(m["head_stats"]).drop(columns=["batch"], errors="ignore")
    if mode == "decode":  # the new tokens' rows over the whole cache: a strip, not a square
        offset = spec.kv_seq - spec.seq
        return {
            "map": charts.cache_strip(m["map"]["values"], q_edges, k_edges, offset, log_scale=log_scale,
                                      title=f"head {head} · {kind} · the new tokens over the cache"),
            "mask": charts.cache_strip(density, q_edges, k_edges, offset, title=mask_title(variant),
                                       mask=True),
            "stats": stats,
        }
    return {
        "map": charts.attention_heatmap(m["map"]["values"], q_edges, k_edges,
                                        title=f"head {head} · {kind}", log_scale=log_scale),
        "mask": charts.mask_heatmap(density, q_edges, k_edges, title=mask_title(variant)),
        "stats": stats,
    }


# `key` is MapArgs.key: it names the maps, so the unhashed `_m` and `_args` need no hashing (a
# 512-cell map hashed on every rerun would cost what the cache saves)
@st.cache_resource(max_entries=64, show_spinner=False)
def _views(key: str, log_scale: bool, _m: dict, _args: MapArgs) -> dict:
    return views_from_maps(_m, _args.variant, _args.head, _args.reduce, log_scale, _args.mode)


@st.cache_resource(max_entries=64, show_spinner=False)
def _views_here(key: str, log_scale: bool, _args: MapArgs) -> dict:
    a = _args
    m = results.maps(a.spec, a.variant, a.head, a.size, a.reduce, a.temperature, a.source, a.mode)
    return views_from_maps(m, a.variant, a.head, a.reduce, log_scale, a.mode)


def map_views(args: MapArgs, log_scale: bool) -> dict:
    """The figures of a map computed here, in the page: for maps that take a moment."""
    return _views_here(args.key, log_scale, args)


# -- big maps in the worker ------------------------------------------------------------------
def _kept() -> dict:
    return st.session_state.setdefault(KEPT, {})


def kept(args: MapArgs) -> dict | None:
    """What the worker gave for these maps: {"maps": ...}, or {"error": line, "warn": bool,
    "cancelled": bool} (out of memory and a cancel are warnings, any other failure an error)."""
    return _kept().get(args)


def to_draw(wanted: list[MapArgs]) -> list[MapArgs]:
    """The big maps of `wanted` that a press would send to the worker: none asked for yet, or
    cancelled. Kept maps are drawn already, and a failure's one line says what to change (the same
    job would fail the same way), so the page shows its Draw button only while this is not empty."""
    return [a for a in wanted if is_big(a.spec) and (kept(a) is None or kept(a).get("cancelled", False))]


def maps_job(args: MapArgs) -> follow.Job:
    a = args
    return follow.job(tasks.maps_task, a.spec.to_dict(), a.variant, a.head, a.size, a.reduce, a.temperature,
                      a.source.__dict__ if a.source else None, a.mode, kind="maps",
                      title=f"maps of {a.variant}", tag=a)


def request(wanted: list[MapArgs], key: str = MAPS) -> bool:
    """Submit a job for each map in `wanted` that the session does not hold yet. One job a
    variant, all under one key: they share one bar and one Cancel, the worker runs them one after
    the other, and a variant that fails (does not fit, past the bound) costs the others nothing,
    its one line shown where its map would be. False when earlier map jobs still run (they must
    end, or be cancelled, first: nothing is submitted twice)."""
    running = follow.peek(key)
    if running is not None and not running.finished:
        return False
    if running is not None:  # ended since the bar last looked: keep it before it is replaced
        _keep(running)
    todo = to_draw(wanted)
    if todo:
        follow.start(key, *(maps_job(a) for a in todo))
    return True


def drawing(args: MapArgs, key: str = MAPS) -> bool:
    """These maps are in the worker now."""
    view = follow.peek(key)
    return view is not None and not view.finished and args in view.tags


def _keep(view: follow.JobView) -> None:
    """Each job's outcome, by its MapArgs: the maps, or the one line that says why none came."""
    store = _kept()
    for args, handle in zip(view.tags, view.handles):
        store.pop(args, None)  # the newest at the end: the oldest goes first below
        if handle.status == "done":
            store[args] = {"maps": handle.result(0)}
        elif handle.status == "cancelled":
            store[args] = {"error": f"The maps of {args.variant}: {handle.error or 'cancelled'}", "warn": True,
                           "cancelled": True}
        else:
            store[args] = {"error": handle.error or "the maps failed", "warn": handle.error_kind == "oom",
                           "cancelled": False}
    while len(store) > KEEP:
        store.pop(next(iter(store)))


@st.fragment(run_every=0.5)
def _follow_jobs(key: str) -> None:
    view = follow.follow(key, "The maps", wait=False)  # a bar and Cancel while they run
    if view is not None and view.finished:
        _keep(view)
        follow.forget(key)
        st.rerun()  # the whole page: each map's place draws what came back


def follow_jobs(key: str = MAPS) -> None:
    """Follow the map jobs that `request` submitted under `key` (after any rerun too) while the
    page serves; once they end, keep what each gave and draw the page again."""
    if follow.peek(key) is not None:  # no timer while there is nothing to follow
        _follow_jobs(key)


def worker_maps(args: MapArgs, key: str = MAPS) -> dict | None:
    """A big map's dict as the worker gave it; else None, with its place filled: the one line of
    a job that gave none, or that it is being drawn, or what to press."""
    got = kept(args) or {}
    if "error" in got:
        (st.warning if got["warn"] else st.error)(got["error"])
    if "maps" in got:
        return got["maps"]
    if got and not got["cancelled"]:  # its one line says what to change
        return None
    if drawing(args, key):
        st.caption("The maps are being drawn in the worker: see the bar above.")
    else:
        st.info("Maps of this size take a while here: press **Draw the maps** (they are drawn "
                "in the worker, with a Cancel button).")
    return None


def page_maps(args: MapArgs, key: str) -> dict | None:
    """maps_json's dict for a page that draws its own figure: computed here when small; when big,
    `worker_maps`'s."""
    if is_big(args.spec):
        return worker_maps(args, key)
    a = args
    return results.maps(a.spec, a.variant, a.head, a.size, a.reduce, a.temperature, a.source, a.mode)


def draw(args: MapArgs, big: bool, log_scale: bool) -> None:
    """One variant's maps: computed here when small; when big, the worker's (once asked for), its
    one line when it gave none, or what to press."""
    if big:
        got = worker_maps(args)
        if got is None:
            return
        views = _views(args.key, log_scale, got, args)
    else:
        with st.spinner(f"{args.variant}: maps"):
            views = map_views(args, log_scale)
    tab_w, tab_m, tab_s = st.tabs(["weights", "mask", "head stats"])
    with tab_w:
        show(views["map"], key=f"map_{args.variant}")
    with tab_m:
        show(views["mask"], key=f"mask_{args.variant}")
    with tab_s:
        st.dataframe(views["stats"], hide_index=True, width="stretch")
