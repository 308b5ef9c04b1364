"""Story: why long context is expensive, what the tricks save and what they cost, in six chapters,
each one live measurement on this device, one figure and a few sentences written from the numbers.
Presenter mode (?present=1): full width, large type, a chapter at a time; the next chapters are
measured in the worker while the presenter speaks."""
import streamlit as st

from attn import story
from ui import story as chapters

LAST = len(story.CHAPTERS)
presenting = st.query_params.get("present") == "1"
asked = st.query_params.get("chapter", "1")
if "story_chapter" not in st.session_state:
    st.session_state["story_chapter"] = min(max(int(asked), 1), LAST) if asked.isdigit() else 1


def _go(step: int) -> None:
    st.session_state["story_chapter"] = min(max(st.session_state["story_chapter"] + step, 1), LAST)


def _present(on: bool) -> None:
    if on:
        st.query_params["present"] = "1"
    else:
        st.query_params.pop("present", None)


if presenting:
    st.markdown(chapters.PRESENTER_CSS, unsafe_allow_html=True)
    number = st.session_state["story_chapter"]
    st.query_params["chapter"] = str(number)
    back, where, forward, leave = st.columns([1, 4, 1, 1])
    back.button("Previous", icon=":material/arrow_back:", on_click=_go, args=(-1,), disabled=number == 1,
                key="story_prev", width="stretch")
    where.progress(number / LAST, f"Chapter {number} of {LAST}")
    forward.button("Next", icon=":material/arrow_forward:", on_click=_go, args=(1,), disabled=number == LAST,
                   key="story_next", type="primary", width="stretch")
    leave.button("Leave", icon=":material/close_fullscreen:", on_click=_present, args=(False,),
                 key="story_leave", help="back to the whole story on one page", width="stretch")
    chapters.chapter(number, presenting=True)
    if number == LAST:
        chapters.download_button("story_download_present")
else:
    st.markdown(chapters.READING_CSS, unsafe_allow_html=True)
    st.title(":material/auto_stories: The story of attention's cost")
    st.markdown(
        "Six chapters, each one measurement made **now, on this machine**, one figure and what it "
        "means in plain words. The numbers are measured here unless a figure says otherwise (the "
        "cost model beyond what this machine can run; an H100's figures from attn's anchor run).")
    c1, c2 = st.columns([1, 3])
    c1.button("Presenter mode", icon=":material/slideshow:", type="primary", on_click=_present, args=(True,),
              key="story_present", help="full width, large type, a chapter at a time; the next chapters are "
                                        "measured while you speak")
    c2.caption("The chapters are measured in order, in the worker; each appears as soon as it is done.")
    for ch in story.CHAPTERS:
        chapters.chapter(ch.number, presenting=False)
        st.divider()
    chapters.download_button("story_download")
