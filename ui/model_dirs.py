"""Which local model directories the pages accept: attn.model_dirs's rule (ATTN_MODEL_DIRS), and
one more for a server that others can reach.

With ATTN_MODEL_DIRS unset, any directory may be named, which is what a person running attn on
their own machine wants. A server listening beyond the loopback (`--server.address 0.0.0.0`, or
no address at all, which Streamlit takes as every interface) with it unset would let anyone who
reaches the page probe its disk, so there the pages refuse local directories and say what to set.
The library and the command line, run by the machine's own user, keep the plain rule.
"""
from __future__ import annotations

import ipaddress

import streamlit as st

from attn import model_dirs


def listen_address() -> str | None:
    """Streamlit's `server.address`: None or "" means every interface."""
    return st.get_option("server.address") or None


def loopback_only(address: str | None) -> bool:
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def refusal(source: str) -> str | None:
    """The one line that refuses `source` (a local directory) on this server, or None. Touches no
    disk."""
    address = listen_address()
    if model_dirs.allowed_roots() is None and not loopback_only(address):
        return (f"local model directories are off: this server listens on {address or 'every interface'} "
                f"and {model_dirs.ENV} is not set; set it to the folders models may come from, or pick "
                "minilm or a preset")
    try:
        return model_dirs.refusal(source)
    except ValueError as exc:  # a name no path can have
        return str(exc)


def caption() -> str:
    """Where local directories may come from, for the caption under the directory field."""
    if model_dirs.allowed_roots() is None and not loopback_only(listen_address()):
        return (f"Local model directories are off on a server others can reach: set {model_dirs.ENV} to "
                "the folders models may come from.")
    return model_dirs.describe()[0].upper() + model_dirs.describe()[1:] + "."
