"""The previous figures, dimmed, while a new measurement runs: a page draws what it last showed
inside `dimmed(key, running)` instead of letting it vanish until the new result comes."""
from __future__ import annotations

import contextlib
from typing import Iterator

import streamlit as st

STYLE = "<style>.st-key-{key} {{opacity: 0.4; filter: grayscale(0.5); transition: opacity 0.3s;}}</style>"


@contextlib.contextmanager
def dimmed(key: str, running: bool) -> Iterator[None]:
    """A container keyed `key`, drawn at 40% opacity while `running` (a job is measuring)."""
    if running:
        st.markdown(STYLE.format(key=key), unsafe_allow_html=True)
    with st.container(key=key):
        yield
