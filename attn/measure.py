"""The profiler: time, memory, FLOPs (with a cross-check) and error of one attention call.

GPU time comes from CUDA events after a warm-up that waits for times to settle, with repeats
filling a time budget and the L2 cache flushed between repeats; CPU time from
torch.utils.benchmark. Memory is the peak allocated during the call above what was allocated
before it. FLOPs come from the cost model (useful FLOPs); torch's FLOP counter is only a
cross-check, and where the two disagree the result says why.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch

from attn import calibrate, variants
from attn.cost import USEFUL_FLOPS_NOTE, attention_cost
from attn.device import device_name, free_bytes, is_out_of_memory, resolve_device
from attn.environment import environment
from attn.inputs import random_qkv
from attn.readable import nbytes
from attn.spec import AttentionSpec
from attn.variants.gqa import repeat_kv

# reference outputs are computed for a sample of query rows in float64; this bounds their size
REFERENCE_BYTES = 256 * 2**20
# query rows checked against the float64 references: 128 rows of every batch item and head give
# a steady relative error, and keep the check to a fraction of the timing (bench/profiler_fidelity.py)
ERROR_ROWS = 128
L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 (H100: 50 MiB)


class DoesNotFit(RuntimeError):
    """The call needs more memory than the device has free. A result, not a crash."""


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


@dataclass
class Profile:
    variant: str
    spec: dict
    device: str
    backend: str
    latency_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    timing_method: str
    flops: int
    flops_counted: int | None
    flops_note: str
    achieved_tflops: float
    peak_bytes: int
    reserved_bytes: int | None
    memory_method: str
    kernel_error: float | None
    approx_error: float | None
    error_rows: int
    roofline_pct: float | None = None
    attainable_tflops: float | None = None
    energy_j: float | None = None  # per call, from the GPU energy counter; None on the CPU
    energy_per_token_j: float | None = None  # energy_j over the batch * seq queries of a call
    # sdpa on auto: what each backend did when auto timed them for this shape (or why it could
    # not run), so the choice can be checked
    backend_reasons: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    wall_s: float = 0.0  # the whole profile call
    # of which the first call, the warm-up (the call that also measures memory and counts
    # FLOPs) and the repeats
    timing_s: float = 0.0

    @property
    def overhead_s(self) -> float:
        """What the profile spent beyond running the call to time it: memory, FLOP counter,
        errors, environment."""
        return max(0.0, self.wall_s - self.timing_s)

    def to_dict(self) -> dict:
        return asdict(self)


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


# -- timing -------------------------------------------------------------------------------
def time_cpu(fn: Callable[[], object], budget_s: float, warmup: int = 1,
             timer: Callable[[], float] = time.perf_counter) -> Timing:
    """torch.utils.benchmark: blocks of calls until the budget is spent, one median per block.

    `warmup` calls come first (caches, backend choice, allocator); pass 0 when the caller has
    already run the call. blocked_autorange's own block-size estimate warms up further.
    `timer` is wall time; a test on a shared machine may pass time.thread_time."""
    from torch.utils.benchmark import Timer

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


def time_cuda(fn: Callable[[], object], budget_s: float, flush_l2: bool = True,
              max_warmup_s: float = 2.0) -> Timing:
    """CUDA events around each call, after a warm-up that runs until times settle."""
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda") if flush_l2 else None

    def timed_once() -> float:
        if flush is not None:
            flush.zero_()  # queued before the start event, so its time is not counted
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    return settle_then_repeat(timed_once, budget_s, max_warmup_s,
                              "cuda events" + (", L2 flushed" if flush_l2 else ""))


# -- memory -------------------------------------------------------------------------------
def peak_from_memory_events(events: list[tuple[int, int]]) -> int:
    """Peak of the running sum of (time, bytes) allocation events: the peak above the start."""
    running = peak = 0
    for _, nbytes in sorted(events):
        running += nbytes
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
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    return peak_from_memory_events(events)


def cuda_peak_bytes(fn: Callable[[], object]) -> tuple[int, int]:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before, torch.cuda.memory_reserved()


def check_fits(spec: AttentionSpec, variant: str, device: str) -> None:
    cost = attention_cost(spec, variant)
    need, free = cost.peak_bytes, free_bytes(device)
    if need > free:
        raise DoesNotFit(f"does not fit: {variant} at seq {spec.seq} needs ~{nbytes(need)}, "
                         f"{nbytes(free)} free on {device}; lower seq, batch or heads")


# -- energy ----------------------------------------------------------------------------------
def energy_per_call(fn: Callable[[], object], reader, sync: Callable[[], None], min_s: float = 0.5,
                    max_calls: int = 100_000) -> float | None:
    """Joules per call from the GPU's total-energy counter across a loop of calls lasting at
    least `min_s` (the counter is device-wide and updates every few milliseconds)."""
    before = reader.read().energy_mj
    if before is None:
        return None
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s and calls < max_calls:
        fn()
        calls += 1
        if calls % 8 == 0:
            sync()
    sync()
    after = reader.read().energy_mj
    if after is None or after < before:
        return None
    return (after - before) / 1e3 / calls


# -- FLOP cross-check ----------------------------------------------------------------------
def counted_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# variants whose CPU path is torch's fused SDPA kernel (whole, or a chunk of queries at a time)
CPU_SDPA_VARIANTS = ("sdpa", "sliding_window", "block_sparse")


def flops_note(variant: str, spec: AttentionSpec, useful: int, counted: int, device: str) -> str:
    """The cost model's FLOPs against torch's FLOP counter, and why they differ where they do."""
    if counted == useful:
        return f"{USEFUL_FLOPS_NOTE}; torch's FLOP counter agrees"
    every_pair = 4 * spec.batch * spec.heads * spec.head_dim * spec.seq * spec.kv_seq
    ratio = counted / max(useful, 1)
    if counted == 0:
        why = ("the counter sees no FLOPs in the CPU's fused SDPA kernel"
               if variant in CPU_SDPA_VARIANTS and not device.startswith("cuda")
               else "the counter sees no matmuls in this call")
    elif spec.causal and counted == every_pair:
        why = ("the counter counts every (query, key) pair of a causal call, the masked half "
               "included, as if it were dense")
    elif counted > useful:
        why = f"the counter also counts computed-then-masked scores and helper matmuls ({ratio:.2f}x)"
    elif not variants.get(variant).exact:
        why = (f"the counter counts matmuls only ({ratio:.2f}x); the cost model also counts the "
               f"feature maps, sums and normalisation")
    else:
        why = f"the counter sees {ratio:.2f}x of the cost model's count"
    return f"{USEFUL_FLOPS_NOTE}; torch's FLOP counter says {counted:,}: {why}"


# -- errors ---------------------------------------------------------------------------------
def sample_rows(spec: AttentionSpec, max_rows: int) -> torch.Tensor | None:
    """Query rows to check errors on: all when few, else evenly spaced (first and last kept)."""
    per_row = spec.batch * spec.heads * spec.kv_seq * 8 * 3  # weights, scores, float64
    limit = max(1, min(max_rows, REFERENCE_BYTES // per_row))
    if spec.seq <= limit:
        return None
    return torch.linspace(0, spec.seq - 1, limit).round().long().unique()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    denom = ref.norm().item()
    diff = (out.double() - ref).norm().item()
    return diff / denom if denom > 0 else diff


def errors(out: torch.Tensor, q, k, v, spec: AttentionSpec, variant: str,
           max_rows: int = ERROR_ROWS) -> tuple[float, float, int]:
    """(kernel_error, approx_error, rows checked): against this variant's own math in float64,
    and against exact full attention with the same causal flag in float64."""
    rows = sample_rows(spec, max_rows)
    q64, k64, v64 = (t.double() for t in (q, k, v))
    v64 = repeat_kv(v64, spec.groups)
    got = out if rows is None else out.index_select(2, rows.to(out.device))
    mine, exact = variants.get(variant).weights, variants.get("dense").weights
    ref = mine(q64, k64, spec, rows) @ v64
    # dense and sdpa share the plain math: one float64 reference serves both errors
    full = ref if mine is exact else exact(q64, k64, spec, rows) @ v64
    n = spec.seq if rows is None else rows.numel()
    return relative_error(got, ref), relative_error(got, full), n


def backend_name(variant: str, q, k, v, spec: AttentionSpec) -> str:
    if variant == "sdpa":
        return variants.sdpa.backend_used(q, k, v, spec)
    if variant in ("sliding_window", "block_sparse"):
        return "flex_attention" if q.is_cuda else "blockwise (torch)"
    if variant == "dense":
        return "eager (torch)"
    return "torch"


# -- the profiler ----------------------------------------------------------------------------
def profile(spec: AttentionSpec, variant: str, device: str | None = None, budget_s: float = 1.0,
            check_errors: bool = True, error_rows: int = ERROR_ROWS, temperature: float = 1.0,
            inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> Profile:
    """Profile one variant on one spec. Raises ValueError for a spec it cannot run (with the
    reasons in words) and DoesNotFit when the call needs more memory than is free."""
    started = time.perf_counter()
    var = variants.get(variant)
    device = resolve_device(device or spec.device)
    spec = spec.with_(device=device)
    reasons = var.unsupported(spec, device)
    if reasons:
        raise ValueError("; ".join(reasons))
    check_fits(spec, variant, device)  # before allocating the inputs
    on_cuda = device.startswith("cuda")
    q = k = v = None
    try:
        q, k, v = inputs if inputs is not None else random_qkv(spec, temperature)
        with torch.inference_mode():
            fn = lambda: var.run(q, k, v, spec)  # noqa: E731
            t0 = time.perf_counter()
            out = fn()  # first call: compiles, picks backends, warms caches
            calls_s = [time.perf_counter() - t0]
            backend = backend_name(variant, q, k, v, spec)
            backend_reasons = (variants.sdpa.auto_reasons(q, k, spec)
                               if variant == "sdpa" and spec.backend == "auto" else {})

            # The second call is the warm-up, and it also gives the peak memory and torch's FLOP
            # count, so neither costs a call of its own (a second or more at long sequences).
            # The counter is a dispatch mode that allocates nothing: the peak is the same with
            # it or without it.
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)

            def counted_call() -> None:
                t1 = time.perf_counter()
                with counter:
                    fn()
                calls_s.append(time.perf_counter() - t1)  # the call alone, not the profiler's set-up

            if on_cuda:
                peak, reserved = cuda_peak_bytes(counted_call)
                memory_method = "torch.cuda.max_memory_allocated above the baseline"
            else:
                peak, reserved = cpu_peak_bytes(counted_call), None
                memory_method = "torch profiler memory events (CPU allocator) during one call"
            counted = int(counter.get_total_flops())
            timing = time_cuda(fn, budget_s) if on_cuda else time_cpu(fn, budget_s, warmup=0)
            energy = None
            if on_cuda:
                from attn.telemetry import open_nvml

                reader, _ = open_nvml(q.device.index or 0)
                if reader is not None:
                    energy = energy_per_call(fn, reader, torch.cuda.synchronize)
            useful = var.flops(spec)
            kernel_err = approx_err = None
            rows = 0
            if check_errors:
                kernel_err, approx_err, rows = errors(out, q, k, v, spec, variant, error_rows)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise DoesNotFit(f"does not fit: out of memory on {device} ({str(err).splitlines()[0]})") from None
    finally:
        del q, k, v
        if on_cuda:
            torch.cuda.empty_cache()
    achieved = useful / (timing.median_ms * 1e-3) / 1e12
    prof = Profile(
        variant=variant, spec=spec.to_dict(), device=device_name(device), backend=backend,
        latency_ms=timing.median_ms, p10_ms=timing.p10_ms, p90_ms=timing.p90_ms,
        repeats=timing.repeats, timing_method=timing.method,
        flops=useful, flops_counted=counted,
        flops_note=flops_note(variant, spec, useful, counted, device),
        achieved_tflops=achieved, peak_bytes=int(peak), reserved_bytes=reserved,
        memory_method=memory_method, kernel_error=kernel_err, approx_error=approx_err,
        error_rows=rows, energy_j=energy,
        energy_per_token_j=None if energy is None else energy / (spec.batch * spec.seq),
        backend_reasons=backend_reasons,
        cost=attention_cost(spec, variant).to_dict(),
        environment=environment(device), timing_s=sum(calls_s) + timing.elapsed_s,
    )
    _add_roofline(prof, spec, device)
    prof.wall_s = time.perf_counter() - started
    return prof


def _add_roofline(prof: Profile, spec: AttentionSpec, device: str) -> None:
    cal = calibrate.cached(device)
    if cal is None:
        return
    attainable = cal.attainable_tflops(spec.dtype, prof.cost["arithmetic_intensity"])
    if attainable and math.isfinite(attainable):
        prof.attainable_tflops = attainable
        prof.roofline_pct = 100.0 * prof.achieved_tflops / attainable
