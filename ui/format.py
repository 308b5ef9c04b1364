"""Numbers as people read them (kept in attn, so that the HTML report writes the same words)."""
from attn.readable import ms, nbytes, pct, ratio, si

__all__ = ["ms", "nbytes", "pct", "ratio", "si"]
