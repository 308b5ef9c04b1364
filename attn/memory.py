"""Memory of one call: the peak allocated during it above what was allocated before it, and the
check, before anything is allocated, that the cost model's estimate fits in what is free.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

import torch

from attn.cost import attention_cost
from attn.device import free_bytes, synchronize
from attn.readable import nbytes
from attn.spec import AttentionSpec


class DoesNotFit(RuntimeError):
    """The call needs more memory than the device has free. A result, not a crash."""


def peak_from_memory_events(events: list[tuple[int, int]]) -> int:
    """Peak of the running sum of (time, bytes) allocation events: the peak above the start."""
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Kineto writes a line to the process's stderr (fd 2) at each profiler start and stop;
    the CLI's stderr is for messages to people, so those lines go to /dev/null."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            sys.stderr.flush()
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated by torch on the CPU during one call, from the profiler's memory
    events: what this call allocated, not the process's lifetime peak."""
    from torch.profiler import ProfilerActivity, profile  # lazy: only the CPU path needs it

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    return peak_from_memory_events(events)


def cuda_peak_bytes(fn: Callable[[], object], device: str = "cuda") -> tuple[int, int]:
    """(peak allocated during fn above the baseline, reserved) from the CUDA allocator's
    statistics. A seam: the fake-CUDA tests replace it, as they have no allocator to read."""
    synchronize(device)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated() - before, torch.cuda.memory_reserved()


def peak_bytes(fn: Callable[[], object], device: str, during: str = "one call"
               ) -> tuple[int, int | None, str]:
    """(peak bytes allocated during fn above what was allocated before it, the CUDA allocator's
    reserved bytes or None on the CPU, how the peak was measured, in words)."""
    if str(device).startswith("cuda"):
        peak, reserved = cuda_peak_bytes(fn, device)
        return peak, reserved, f"torch.cuda.max_memory_allocated above the baseline, {during}"
    return cpu_peak_bytes(fn), None, f"torch profiler memory events (CPU allocator) during {during}"


def check_fits(spec: AttentionSpec, variant: str, device: str, mode: str = "forward") -> None:
    """DoesNotFit, before anything is allocated, when the cost model's peak for the regime is
    more than the device has free."""
    cost = attention_cost(spec, variant, mode)
    need, free = cost.peak_bytes, free_bytes(device)
    if mode == "decode":
        need += 2 * spec.batch * spec.kv_heads * spec.kv_seq * spec.head_dim * spec.dtype_bytes
    if need > free:
        at = f"context {spec.kv_seq}" if mode == "decode" else f"seq {spec.seq}"
        what = "" if mode == "forward" else f" ({mode})"
        raise DoesNotFit(f"does not fit: {variant}{what} at {at} needs ~{nbytes(need)}, "
                         f"{nbytes(free)} free on {device}; lower {'context' if mode == 'decode' else 'seq'}, "
                         f"batch or heads")
