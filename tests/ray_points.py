"""Point functions for test_cluster.py's Ray tasks. Module-level, so that Ray's workers import them
by name (the checkout is on their path, as it is on the driver's)."""
from __future__ import annotations

import os
import time

from attn.cluster import measure_on_node

CRASH_AT = 128  # the point whose worker process dies


def crash_at_128(spec: dict, variant: str, x: int, device: str, budget_s: float, mode: str) -> dict:
    """The real point, except at x == CRASH_AT, where the worker process exits at once, as a
    segfault or the kernel's OOM killer would end it (no exception, no cleanup)."""
    if x == CRASH_AT:
        os._exit(1)
    return measure_on_node(spec, variant, x, device, budget_s, mode)


def slow_after_first(spec: dict, variant: str, x: int, device: str, budget_s: float, mode: str) -> dict:
    """The smallest point at once; every other one takes a minute, so a cancel finds them queued
    or running."""
    if x > 64:
        time.sleep(60)
    return measure_on_node(spec, variant, x, device, budget_s, mode)


def oom_at_128(spec: dict, variant: str, x: int, device: str, budget_s: float, mode: str) -> dict:
    """The real point below 128; at 128 out of memory, as the profiler refuses a size that does not
    fit; above it a minute's wait, so the test sees the larger points cancelled, not finished."""
    if x == CRASH_AT:
        from attn import measure

        raise measure.DoesNotFit(f"does not fit: {variant} at {x} needs more than this test allows")
    if x > CRASH_AT:
        time.sleep(60)
    return measure_on_node(spec, variant, x, device, budget_s, mode)
