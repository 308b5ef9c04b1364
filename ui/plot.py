"""Figures on a page. theme=None keeps attn's own colours: Streamlit's theme would replace the
heatmaps' colour scales, and masked (zero) cells would no longer read as black."""
from __future__ import annotations

import streamlit as st


def show(fig, key: str, **kwargs):
    return st.plotly_chart(fig, theme=None, key=key, **kwargs)
