"""Timing one call: repeats that fill a time budget, and their median and 10th/90th percentiles.

GPU time comes from CUDA events after a warm-up that waits for times to settle, with repeats
filling a time budget and the L2 cache flushed between repeats; CPU time from
torch.utils.benchmark. The statistics and the warm-up loop are pure, so the GPU path is tested on
the CPU with fakes.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 (H100: 50 MiB)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    method: str
    times_ms: tuple[float, ...] = field(repr=False, default=())
    elapsed_s: float = 0.0  # wall time of the warm-up and the repeats together


# -- statistics, shared by the CPU and GPU paths ---------------------------------------------
def summarize(times_ms: list[float], warmup: int, method: str, elapsed_s: float = 0.0) -> Timing:
    """Median and 10th/90th percentiles of repeat times."""
    if not times_ms:
        raise ValueError("no repeat times to summarize")
    ordered = sorted(times_ms)
    if len(ordered) == 1:
        p10 = p90 = ordered[0]
    else:
        deciles = statistics.quantiles(ordered, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    return Timing(statistics.median(ordered), p10, p90, len(ordered), warmup, method,
                  tuple(times_ms), elapsed_s)


def settled(times_ms: list[float], window: int = 3, tolerance: float = 0.05) -> bool:
    """The last `window` warm-up times agree within `tolerance` of their median."""
    if len(times_ms) < window:
        return False
    last = times_ms[-window:]
    mid = statistics.median(last)
    return all(abs(t - mid) <= tolerance * mid for t in last)


def repeats_for_budget(estimate_ms: float, budget_s: float, lo: int = 10, hi: int = 10_000) -> int:
    """How many repeats of a call of about `estimate_ms` fill `budget_s` seconds."""
    return int(min(hi, max(lo, budget_s * 1e3 / max(estimate_ms, 1e-3))))


# -- timers ---------------------------------------------------------------------------------
def time_cpu(fn: Callable[[], object], budget_s: float, warmup: int = 1,
             timer: Callable[[], float] = time.perf_counter) -> Timing:
    """torch.utils.benchmark: blocks of calls until the budget is spent, one median per block.

    `warmup` calls come first (caches, backend choice, allocator); pass 0 when the caller has
    already run the call. blocked_autorange's own block-size estimate warms up further.
    `timer` is wall time; a test on a shared machine may pass time.thread_time."""
    from torch.utils.benchmark import Timer  # lazy: ~0.4 s to import, and only the CPU path needs it

    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    # Timer runs single-threaded unless told otherwise; time the call as it runs everywhere else
    bench = Timer(stmt="fn()", globals={"fn": fn}, timer=timer, num_threads=torch.get_num_threads())
    m = bench.blocked_autorange(min_run_time=budget_s)
    # each entry of m.times is the mean of one block of m.number_per_run calls
    return summarize([t * 1e3 for t in m.times], warmup=warmup,
                     method=f"torch.utils.benchmark: {len(m.times)} blocks of {m.number_per_run} calls",
                     elapsed_s=time.perf_counter() - t0)


def settle_then_repeat(timed_once: Callable[[], float], budget_s: float, max_warmup_s: float,
                       method: str, clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Warm up until the times settle (or `max_warmup_s` passes), then repeat to fill the
    budget at the settled time. `timed_once` runs the call once and returns its milliseconds;
    the GPU path gives it CUDA events, tests a script."""
    warm: list[float] = []
    t0 = clock()
    while not settled(warm) and clock() - t0 < max_warmup_s:
        warm.append(timed_once())
    if not warm:  # no warm-up allowed: the first repeat's time sets the count
        warm.append(timed_once())
    repeats = repeats_for_budget(statistics.median(warm[-3:]), budget_s)
    times = [timed_once() for _ in range(repeats)]
    return summarize(times, warmup=len(warm), method=method, elapsed_s=clock() - t0)


def cuda_ms(fn: Callable[[], object]) -> float:
    """Milliseconds of one call between two CUDA events (the host clock would time the launch).
    Every CUDA timing in attn goes through here (time_cuda, the train regime, sdpa auto's choice):
    the fake-CUDA tests replace it, as fake tensors have no events to record."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def host_ms(fn: Callable[[], object]) -> float:
    """Milliseconds of one call on the host clock."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def time_cuda(fn: Callable[[], object], budget_s: float, flush_l2: bool = True,
              max_warmup_s: float = 2.0) -> Timing:
    """CUDA events around each call, after a warm-up that runs until times settle."""
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda") if flush_l2 else None

    def timed_once() -> float:
        if flush is not None:
            flush.zero_()  # queued before the start event, so its time is not counted
        return cuda_ms(fn)

    return settle_then_repeat(timed_once, budget_s, max_warmup_s,
                              "cuda events" + (", L2 flushed" if flush_l2 else ""))


def check_budget(budget_s: float) -> None:
    """A time budget is a finite number of seconds >= 0 (NaN would keep the timer running)."""
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) \
            or not math.isfinite(budget_s) or budget_s < 0:
        raise ValueError(f"budget must be a finite number of seconds >= 0, got {budget_s!r}")
