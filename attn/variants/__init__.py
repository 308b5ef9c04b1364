"""Attention variants: one module per family, all in one registry (`get`, `names`).

Importing this package registers the built-in variants; a new one is a module that calls
`register(Variant(...))`, imported below.
"""
from attn.variants.registry import Variant, get, names, register
from attn.variants import (dense, sdpa, sliding_window, block_sparse, topk, linear,  # noqa: E402,F401
                           performer, linformer)

__all__ = ["Variant", "get", "names", "register"]
