"""Errors as messages with what to change, never a traceback."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import streamlit as st

from attn.home import AttnHomeError

log = logging.getLogger("attn.ui")


@contextlib.contextmanager
def shown_as_error(what: str) -> Iterator[None]:
    """Run a block; a failure becomes an st.error naming what failed and why."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError, AttnHomeError) as err:
        st.error(f"{what}: {err.args[0] if err.args else err}")
    except Exception as err:  # the app keeps serving whatever a job throws
        log.exception("%s failed", what)
        st.error(f"{what} failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")

