"""Follow the worker's jobs on a page, one way everywhere: submit once, show progress with a
Cancel button, hand partial items and the result to the page, say in one line why a job gave
none, and find the jobs again after a rerun.

    if st.button("Run sweep"):
        follow.start("sc_sweep", follow.job(tasks.sweep_task, spec, names, xs, kind="sweep",
                                            title="sdpa,linear over seq"))
    view = follow.follow("sc_sweep", "The sweep")  # on every run: re-attaches to what runs
    if view is not None and view.ok:
        keep(view.result)

A key names one question of the page. Its jobs (one, or a few that the worker runs one after the
other) are held under it in ``st.session_state``, or in a store every session shares, so a rerun
(a click elsewhere, the Cancel button, a second tab on a shared store) finds them again instead
of submitting them twice.

Two ways to follow:
- ``wait=True``: the script waits, drawing the bar, until the jobs end; then the reasons are shown,
  the key is forgotten and the view is returned, once.
- ``wait=False``, inside ``st.fragment(run_every=...)``: the bar is drawn and the view comes back
  at once, with the partial items so far. A finished view stays, with its reasons, until
  ``start`` replaces it; ``first`` is True on the one call that first sees it finished.

An out-of-memory ending ("does not fit: ...") is a result of the measurement, shown as a warning;
any other failure is an error. The messages are attn.jobs' one-line ones, never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, MutableMapping

import streamlit as st

from attn.jobs import JobHandle, Progress, default_runner

POLL_S = 0.1  # how often a waiting page redraws the bar; each redraw also lets a click interrupt it


@dataclass(frozen=True)
class Job:
    """One call for the worker, ``fn(*args, **kwargs)`` (a module-level function, see attn.jobs),
    and ``tag``: the page's own note, handed back beside the result (a spec, a variant)."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    kind: str = "job"
    title: str = ""
    tag: Any = None


def job(fn: Callable[..., Any], *args: Any, kind: str = "job", title: str = "", tag: Any = None,
        **kwargs: Any) -> Job:
    return Job(fn, args, kwargs, kind, title, tag)


@dataclass
class JobView:
    """The jobs under one key as they stand: progress, partial items, results, why any gave none."""

    handles: list[JobHandle]
    tags: list[Any]
    first: bool = False  # finished, and no earlier call had said so: keep the result now

    @property
    def finished(self) -> bool:
        return all(h.done() for h in self.handles)

    @property
    def ok(self) -> bool:
        """Every job ended with a result."""
        return all(h.status == "done" for h in self.handles)

    @property
    def cancelled(self) -> bool:
        return any(h.status == "cancelled" for h in self.handles)

    @property
    def progress(self) -> Progress:
        """The jobs' fraction together, and the message of the one running (or next)."""
        fraction = sum(1.0 if h.done() else h.progress.fraction for h in self.handles)
        current = self._current()
        message = current.progress.message if current else "done"
        if len(self.handles) > 1 and current is not None:
            message = f"{self.handles.index(current) + 1} of {len(self.handles)} · {message}"
        return Progress(fraction / max(1, len(self.handles)), message)

    def partials(self) -> list[Any]:
        """Every item the jobs streamed so far, in order."""
        return [item for h in self.handles for item in h.partials()]

    @property
    def results(self) -> list[tuple[Any, Any]]:
        """(tag, result) of each job that ended with one, in submission order."""
        return [(tag, h.result(0)) for tag, h in zip(self.tags, self.handles) if h.status == "done"]

    @property
    def result(self) -> Any:
        """The first job's result; None until it ends with one."""
        return self.handles[0].result(0) if self.handles[0].status == "done" else None

    def _current(self) -> JobHandle | None:
        return next((h for h in self.handles if not h.done()), None)


def start(key: str, *jobs: Job, store: MutableMapping | None = None) -> JobView | None:
    """Submit ``jobs`` under ``key``, replacing what finished there before. While jobs under
    ``key`` still run, those are returned and nothing is submitted: a double click, or a rerun
    that asks again, never measures twice. None when there is nothing to submit."""
    store = _store(store)
    view = _view(store, key)
    if view is not None and not view.finished:
        return view
    if not jobs:
        return None
    runner = default_runner()
    handles: list[JobHandle] = []
    try:
        for j in jobs:
            handles.append(runner.submit(j.fn, *j.args, kind=j.kind, title=j.title, **j.kwargs))
    except Exception:
        for handle in handles:  # all or nothing: a half-submitted batch would answer half
            handle.cancel()
        raise
    store[_slot(key)] = {"handles": handles, "tags": [j.tag for j in jobs], "seen": False}
    return JobView(handles, [j.tag for j in jobs])


def follow(key: str, what: str, *, wait: bool = True, cancel: bool = True,
           store: MutableMapping | None = None) -> JobView | None:
    """The jobs under ``key`` (None when there are none), followed on the page: a progress bar
    labelled with ``what`` and a Cancel button while they run, then one line for each that gave
    no result. ``wait`` decides whether the script waits for the end (see the module's note)."""
    store = _store(store)
    view = _view(store, key)
    if view is None:
        return None
    if not view.finished:
        slot = st.empty()
        with slot.container():
            bar_at, button_at = st.columns([5, 1]) if cancel else (st.container(), None)
            bar = bar_at.progress(*_bar(view, what))
            if button_at is not None:
                button_at.button("Cancel", key=f"{key}_cancel", icon=":material/cancel:",
                                 on_click=_cancel, args=(key, store),
                                 help="stops the job; measurements already made are kept")
        if not wait:
            return view
        while (current := view._current()) is not None:
            current.wait(POLL_S)
            bar.progress(*_bar(view, what))
        slot.empty()
    _say(view, what)
    if wait:
        store.pop(_slot(key), None)
        view.first = True
    else:
        record = store.get(_slot(key)) or {}
        view.first = not record.get("seen", True)
        record["seen"] = True
    return view


def peek(key: str, store: MutableMapping | None = None) -> JobView | None:
    """The jobs under ``key`` as they stand, drawing nothing: for a page that collects jobs it
    ran ahead (the Story page) before it shows them. None when there are none."""
    return _view(_store(store), key)


def forget(key: str, store: MutableMapping | None = None) -> None:
    """Drop what is held under ``key`` (after the page kept its result)."""
    _store(store).pop(_slot(key), None)


def _store(store: MutableMapping | None) -> MutableMapping:
    return st.session_state if store is None else store


def _slot(key: str) -> str:
    return f"follow:{key}"  # not a widget key, so a page may name its job after its button


def _view(store: MutableMapping, key: str) -> JobView | None:
    record = store.get(_slot(key))
    return None if record is None else JobView(record["handles"], record["tags"])


def _cancel(key: str, store: MutableMapping) -> None:
    view = _view(store, key)
    for handle in view.handles if view else []:
        handle.cancel()


def _bar(view: JobView, what: str) -> tuple[float, str]:
    fraction, message = view.progress
    return min(max(fraction, 0.0), 1.0), f"{what}: {message}"


def _say(view: JobView, what: str) -> None:
    """One line for each job that failed (out of memory: a warning) and one if any was cancelled."""
    batch = len(view.handles) > 1
    for handle in view.handles:
        if handle.status != "failed":
            continue
        name, line = handle.title if batch else what, handle.error or "the job failed"
        if name and name not in line:  # attn's "does not fit: dense at seq ..." names it already
            line = f"{name}: {line}"
        (st.warning if handle.error_kind == "oom" else st.error)(line)
    stopped = [h for h in view.handles if h.status == "cancelled"]
    if stopped:
        finished = sum(h.status == "done" for h in view.handles)
        line = f"{what}: {stopped[0].error or 'cancelled'}"
        st.warning(line + (f" ({finished} of {len(view.handles)} finished)" if batch else ""))
