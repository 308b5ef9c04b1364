"""The Story page's helpers: run the chapters ahead in the worker, keep each chapter's result in the
session (going back is instant), draw a chapter (its sentences, figure and numbers, or in words why
it has none), and the presenter's large type."""
from __future__ import annotations

import streamlit as st

from attn import story, tasks
from attn.story.report import story_html
from ui import follow
from ui.plot import show

RESULTS = "story_results"  # {chapter number: its result, or {"error": ...}} for this session
PRESENTER_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] {display: none;}
[data-testid="stMainBlockContainer"] {max-width: 100%; padding: 2rem 3rem 3rem;}
.st-key-story_said p {font-size: 1.7rem; line-height: 1.45;}
.st-key-story_head h1 {font-size: 3.2rem;}
.st-key-story_head p {font-size: 1.5rem;}
</style>"""
READING_CSS = "<style>.st-key-story_said p, [class*='st-key-story_said_'] p {font-size: 1.15rem;}</style>"


def kept() -> dict[int, dict]:
    return st.session_state.setdefault(RESULTS, {})


def _key(number: int) -> str:
    return f"story_ch{number}"


def _keep(number: int, view: follow.JobView) -> None:
    """A finished chapter's result, or why it has none (a cancelled one is asked again later)."""
    if view.ok:
        kept()[number] = view.result
    elif not view.cancelled:
        handle = view.handles[0]
        kept()[number] = {"chapter": number, "error": handle.error or "the measurement failed",
                          "error_kind": handle.error_kind}


def collect() -> None:
    """Keep every chapter whose job ended while another chapter was on screen."""
    for ch in story.CHAPTERS:
        view = follow.peek(_key(ch.number))
        if view is not None and view.finished:
            _keep(ch.number, view)
            follow.forget(_key(ch.number))


def run_ahead(first: int) -> None:
    """Queue chapter `first` and every later one that is neither kept nor queued, in order: the
    worker measures them while the presenter speaks."""
    collect()
    for ch in story.CHAPTERS[first - 1:]:
        if ch.number not in kept() and follow.peek(_key(ch.number)) is None:
            follow.start(_key(ch.number), follow.job(tasks.story_chapter_task, ch.number, kind="story",
                                                     title=f"story {ch.number}: {ch.waits}"))


def chapter(number: int, presenting: bool) -> None:
    """One chapter: its heading, then (waiting for its measurement if it has not ended) its
    sentences, figure and numbers; a failed measurement is said in words."""
    run_ahead(number)
    ch = story.chapter(number)
    with st.container(key=f"story_head_{number}" if not presenting else "story_head"):
        (st.title if presenting else st.header)(f"{number}. {ch.title}")
        st.markdown(f"*{ch.question}*")
    result, fresh = kept().get(number), False
    if result is None:
        view = follow.follow(_key(number), f"Chapter {number}: measuring {ch.waits}")
        if view is not None:
            _keep(number, view)
        result, fresh = kept().get(number), True
    if result is None:
        st.warning("This chapter's measurement was cancelled: come back to it to measure it again.")
        return
    if "error" in result:
        if not fresh:  # follow() has just said it once
            st.error(f"This chapter's measurement failed: {result['error']}")
        st.info("No measurement for this chapter on this device; the story goes on with the next one.")
        return
    with st.container(key="story_said" if presenting else f"story_said_{number}"):
        for line in ch.sentences(result):
            st.markdown(line.replace("$", "\\$"))
    show(_figure(ch, result, presenting), key=f"story_fig_{number}")
    with st.expander("The numbers, and how they were measured"):
        st.table({"": [k for k, _ in ch.numbers(result)], "value": [v for _, v in ch.numbers(result)]})
        st.caption(f"measured {result.get('measured_at', '')} on {result['device_name']}")


def _figure(ch: story.Chapter, result: dict, presenting: bool):
    """The chapter's figure, built once per result and mode (0.1-0.2 s a build on 2 cores: going
    back and forth must not pay it again)."""
    built = st.session_state.setdefault("story_figures", {})
    key = (ch.number, presenting, id(result))
    if key not in built:
        fig = ch.figure(result, height=560 if presenting else 440)
        if presenting:
            fig.update_layout(font=dict(size=16))
        built[key] = fig
    return built[key]


def download_button(key: str) -> None:
    """The story so far as one HTML file (built when clicked)."""
    results = dict(kept())
    missing = [ch.number for ch in story.CHAPTERS if ch.number not in results]
    st.download_button(
        "Download the story (one HTML file)", lambda: story_html(results), file_name="attn-story.html",
        mime="text/html", icon=":material/download:", key=key, on_click="ignore",
        help="every chapter's sentences, figure and numbers, the device and the date; opens with no "
             "network" + (f". Not yet measured: chapter {', '.join(map(str, missing))}" if missing else ""))
