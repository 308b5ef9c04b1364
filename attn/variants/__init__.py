"""Attention variants: one module per variant, all in one registry (`get`, `names`).

Importing this package imports every module in it, and each variant module registers itself
(`register(Variant(...))` with its parameters, colour and functions). A new variant is one new
file here and nothing else. The built-in variants come first, in the order the pages list them;
the helper modules (registry, the kernels' shared code, GQA) register nothing.
"""
import importlib
import pkgutil

from attn.variants.registry import Variant, color_of, get, names, register

# the order the pages list the built-in variants in; any other module follows, by name
_FIRST = ("dense", "sdpa", "sliding_window", "block_sparse", "topk", "linear", "performer", "linformer")


def load_all() -> None:
    """Import every module of this package that is not imported yet (their variants register)."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _FIRST)
    for name in (*_FIRST, *found):
        importlib.import_module(f"{__name__}.{name}")


load_all()

__all__ = ["Variant", "color_of", "get", "load_all", "names", "register"]
