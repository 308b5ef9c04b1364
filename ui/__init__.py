"""The Streamlit layer shared by the pages: the sidebar, the spec editor, formatting, errors.

Only this package and pages/ import streamlit; they call attn's public API and never torch.
"""
