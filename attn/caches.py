"""Bounded caches: what a long-running server keeps between calls has a size.

The Streamlit server runs for days and every tab's work goes through the same process (its
worker too), so every cache keyed by a spec or a shape is an LRU with a maximum, registered by
name so that a test and `bench/reliability.py` can read how full each one is.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable

_ALL: dict[str, "LRU"] = {}


class LRU(OrderedDict):
    """A dict that forgets its least recently used entry past `maxsize` entries."""

    def __init__(self, name: str, maxsize: int) -> None:
        super().__init__()
        self.name, self.maxsize = name, maxsize
        self._lock = threading.Lock()
        _ALL[name] = self

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key not in self:
                return default
            self.move_to_end(key)
            return super().__getitem__(key)

    def __setitem__(self, key: Hashable, value: Any) -> None:
        with self._lock:
            super().__setitem__(key, value)
            self.move_to_end(key)
            while len(self) > self.maxsize:
                self.popitem(last=False)


def sizes() -> dict[str, tuple[int, int]]:
    """Every registered cache: (entries now, maximum)."""
    return {name: (len(cache), cache.maxsize) for name, cache in _ALL.items()}
