"""The previous figures, dimmed, while a new measurement runs: a page draws what it last showed
inside `dimmed(key, running)` instead of letting it vanish until the new result comes."""
from __future__ import annotations

import contextlib
from typing import Iterator

import streamlit as st

# the container's key starts with "dimmed_", so one constant style sheet, written in the call,
# reaches it (no raw HTML is built from a value: tests/test_html_escaping.py)
PREFIX = "dimmed_"


@contextlib.contextmanager
def dimmed(key: str, running: bool) -> Iterator[None]:
    """A container keyed `dimmed_<key>`, drawn at 40% opacity while `running` (a job is
    measuring). A page has one such container at a time."""
    if running:
        st.markdown("<style>[class*='st-key-dimmed_'] {opacity: 0.4; filter: grayscale(0.5); "
                    "transition: opacity 0.3s;}</style>", unsafe_allow_html=True)
    with st.container(key=PREFIX + key):
        yield
