"""The checks of `attn selftest`, each a function of the device that returns one Check: passed,
failed (with the figure that failed) or not possible here (with the reason).

Accuracy: every variant's output, gradients and decode step against the float64 reference of its
own math. Cost: FLOPs and bytes against closed forms, and against torch's FLOP counter where that
counter is right. Timing: attn's timer against an independent one on the same call. Backend:
sdpa auto's choice against each backend's own time. GPU: NVML energy, memory after an OOM.
"""
from __future__ import annotations

import functools
import statistics
import timeit
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from attn import timing, variants
from attn.accuracy import errors
from attn.cost import attention_cost, io_bytes
from attn.inputs import random_qkv
from attn.masks import materialise
from attn.regimes import decode_spec
from attn.spec import AttentionSpec

PASSED, FAILED, NOT_HERE = "passed", "failed", "not possible here"
NEEDS_CUDA = "needs a CUDA device"
# kernel and gradient error bounds against float64, by dtype (tests/test_variants.py's)
TOLERANCE = {"float32": 1e-5, "float64": 1e-12, "bfloat16": 2e-2, "float16": 5e-3}
GRAD_TOLERANCE = {"float32": 1e-4, "float64": 1e-10, "bfloat16": 5e-2, "float16": 1e-2}
TIMER_AGREEMENT = 0.05  # attn's median and the independent timer's agree within 5%


@dataclass(frozen=True)
class Check:
    name: str
    group: str  # accuracy | cost | timing | backend | gpu
    status: str  # passed | failed | not possible here
    figure: str  # what was measured, against what bound
    reason: str = ""  # what it compares, or why it cannot run here

    def to_dict(self) -> dict:
        return asdict(self)


# -- the shapes -----------------------------------------------------------------------------------
# small enough for a CPU in seconds, and each variant's budget drops something (a window of 16
# in 64 keys), with GQA; every variant's own parameter at a value that makes it approximate
PARAMS = dict(window=16, block=16, top_k=8, features=64, rank=16)


def shapes(device: str, quick: bool) -> list[AttentionSpec]:
    dtype = "float32" if device == "cpu" else "bfloat16"
    all_shapes = [
        AttentionSpec(batch=1, seq=64, heads=4, kv_heads=2, head_dim=16, causal=True),
        AttentionSpec(batch=2, seq=96, kv_seq=128, heads=2, head_dim=32, causal=False),
        AttentionSpec(batch=1, seq=200, heads=4, kv_heads=1, head_dim=64, causal=True),
    ]
    return [s.with_(dtype=dtype, device=device, **PARAMS) for s in all_shapes[:1 if quick else None]]


def runnable_spec(name: str, spec: AttentionSpec, mode: str, device: str) -> AttentionSpec:
    """The spec, or its non-causal twin for a variant that cannot be causal (linformer), so
    that every variant is checked at every shape it can run."""
    if spec.causal and mode != "decode" and runs(name, spec, mode, device) \
            and not runs(name, spec.with_(causal=False), mode, device):
        return spec.with_(causal=False)
    return spec


def runs(name: str, spec: AttentionSpec, mode: str, device: str) -> str | None:
    """Why `name` cannot run `mode` on this spec (None when it can)."""
    var = variants.get(name)
    if mode in var.cannot:  # the regime's own reason says it all
        return var.cannot[mode]
    return "; ".join(var.unsupported(spec, device)) or None


def _worst(results: list[tuple[float, AttentionSpec]], bound: float, what: str) -> tuple[str, str]:
    err, spec = max(results, key=lambda r: r[0])
    shape = f"B{spec.batch} H{spec.heads}/{spec.kv_heads} S{spec.seq} KV{spec.kv_seq} D{spec.head_dim}"
    status = PASSED if err <= bound else FAILED
    return status, f"worst {what} {err:.2e} (bound {bound:.0e}) at {shape}{' causal' if spec.causal else ''}"


# -- accuracy -------------------------------------------------------------------------------------
def accuracy(name: str, mode: str, device: str, quick: bool) -> Check:
    title = f"{name} {mode} against float64"
    tried, skipped = [], []
    for spec in shapes(device, quick):
        step = decode_spec(spec, spec.kv_seq, 1 if quick else 2) if mode == "decode" \
            else runnable_spec(name, spec, mode, device)
        why = runs(name, step, mode, device)
        if why:
            skipped.append(why)
            continue
        var = variants.get(name)
        q, k, v = random_qkv(step)
        if mode == "forward":
            with torch.no_grad():
                out = var.run(q, k, v, step)
            tried.append((errors(out, q, k, v, step, name)[0], step))
        elif mode == "decode":
            with torch.no_grad():
                out = var.decode_step(q, k, v, step)()
            tried.append((errors(out, q, k, v, step, name)[0], step))
        else:
            from attn.training import grad_error, upstream_gradient

            inputs = tuple(t.detach().requires_grad_() for t in (q, k, v))
            g = upstream_gradient(var.run(*inputs, step), step.seed)
            forward = functools.partial(var.run, *inputs, step)
            tried.append((grad_error(forward, inputs, g, step, name)[0], step))
    if not tried:
        return Check(title, "accuracy", NOT_HERE, "", skipped[0] if skipped else "no shape runs here")
    bound = (GRAD_TOLERANCE if mode == "train" else TOLERANCE)[tried[0][1].dtype]
    status, figure = _worst(tried, bound, "grad_error" if mode == "train" else "kernel_error")
    note = {"forward": "output", "train": "dq, dk, dv (the largest)", "decode": "one decode step's output"}[mode]
    return Check(title, "accuracy", status, figure,
                 f"{note} against the variant's own math in float64, {len(tried)} shape(s)")


# -- cost -----------------------------------------------------------------------------------------
def cost_closed_form(name: str, device: str, quick: bool) -> Check:
    """Pairs counted from the mask itself, useful FLOPs 4·B·H·D·pairs, bytes of q, k, v and the
    output, and a decode step's bytes read: the cost model against its own closed forms."""
    title = f"{name} FLOPs and bytes against closed forms"
    var = variants.get(name)
    bad = []
    checked = 0
    for spec in shapes("cpu", quick):
        spec = runnable_spec(name, spec, "forward", "cpu")
        if var.unsupported(spec, "cpu"):
            continue
        checked += 1
        cost = attention_cost(spec, name)
        mask = var.mask(spec)
        if var.exact and mask is not None:
            counted = int(materialise(mask.fn, spec.seq, spec.kv_seq).sum())
        elif var.exact:
            counted = spec.seq * spec.kv_seq
        else:
            counted = cost.pairs  # an approximation's pairs are what it keeps; its FLOPs its work
        if cost.pairs != counted:
            bad.append(f"pairs {cost.pairs:,} != {counted:,} counted in the mask")
        if var.exact and cost.flops != 4 * spec.batch * spec.heads * spec.head_dim * counted:
            bad.append(f"flops {cost.flops:,} != 4·B·H·D·pairs")
        inputs, output = io_bytes(spec)
        b, d, item = spec.batch, spec.head_dim, spec.dtype_bytes
        if inputs != (spec.heads * spec.seq + 2 * spec.kv_heads * spec.kv_seq) * b * d * item:
            bad.append("bytes of q, k, v")
        if cost.min_bytes != inputs + output:
            bad.append(f"min_bytes {cost.min_bytes:,} != inputs + output")
        if "decode" not in var.cannot:
            step = decode_spec(spec, spec.kv_seq)
            dec = attention_cost(step, name, "decode")
            per_key = 2 * b * spec.kv_heads * d * item
            queries = b * spec.heads * d * item
            if var.decode_state_bytes is None and dec.bytes_read != per_key * dec.cached_keys + queries:
                bad.append(f"decode bytes_read {dec.bytes_read:,} != 2·B·KVH·keys·D·bytes + queries")
    if not checked:
        return Check(title, "cost", NOT_HERE, "", "no shape runs here")
    return Check(title, "cost", FAILED if bad else PASSED, "; ".join(bad) or f"{checked} shape(s) agree",
                 "pairs counted in the materialised mask; 4·B·H·D per pair; q, k, v and output "
                 "bytes; decode reads 2·B·KVH·keys·D·bytes plus the queries")


def flop_counter(name: str, device: str, quick: bool) -> Check:
    """torch.utils.flop_counter against the cost model where the counter is right: it counts
    matmuls and SDPA calls as dense (a causal call as if every pair were computed), and sees no
    FLOPs in the CPU's fused SDPA kernel."""
    from attn.flopcheck import counted_flops

    title = f"{name} FLOPs against torch's FLOP counter"
    var = variants.get(name)
    plain = shapes("cpu", True)[0].with_(causal=False)
    every_pair = 4 * plain.batch * plain.heads * plain.head_dim * plain.seq * plain.kv_seq
    if var.flops(plain) != every_pair:
        return Check(title, "cost", NOT_HERE, "",
                     "the counter counts the matmuls torch runs, not this variant's useful work "
                     "(a mask's skipped pairs, an approximation's feature maps): it checks only "
                     "the variants that compute every pair")
    if var.fused_on_cpu and device == "cpu":
        return Check(title, "cost", NOT_HERE, "",
                     "torch's FLOP counter sees no FLOPs in the CPU's fused SDPA kernel")
    bad, checked = [], 0
    for spec in shapes(device, quick):
        q, k, v = random_qkv(spec)
        with torch.no_grad():
            counted = counted_flops(functools.partial(var.run, q, k, v, spec))
        dense_equivalent = 4 * spec.batch * spec.heads * spec.head_dim * spec.seq * spec.kv_seq
        useful = var.flops(spec)
        # the counter counts every pair (a causal call as dense): compare with what that means
        want = dense_equivalent if spec.causal else useful
        checked += 1
        if counted != want:
            bad.append(f"counter {counted:,} != {want:,} at S{spec.seq}{' causal' if spec.causal else ''}")
    return Check(title, "cost", FAILED if bad else PASSED, "; ".join(bad) or f"{checked} shape(s) agree",
                 "non-causal: the counter equals useful FLOPs; causal: it counts every pair "
                 "(4·B·H·D·S·KV), which the check expects")


# -- timing ---------------------------------------------------------------------------------------
# a call of a few milliseconds on a CPU: long enough for the clocks, short enough that each timer
# gets dozens of samples per round
TIMING_SPEC = AttentionSpec(batch=1, seq=512, heads=8, head_dim=64, causal=True)


def independent_ms(fn: Callable[[], object], device: str, budget_s: float) -> tuple[float, str]:
    """The median time of fn by a timer attn's profiler does not use: Triton's do_bench on a
    GPU where Triton is installed, else Python's timeit (the median of loops of calls)."""
    if device.startswith("cuda"):
        try:
            from triton.testing import do_bench
        except ImportError:
            do_bench = None
        if do_bench is not None:
            ms = do_bench(fn, warmup=25, rep=max(1, int(budget_s * 1e3)), return_mode="median")
            return float(ms), "triton.testing.do_bench (median)"
        from attn.device import synchronize

        call = fn

        def fn() -> None:  # the host clock must wait for the GPU
            call()
            synchronize(device)
    once = timeit.Timer(fn).timeit(1)
    number = max(1, int(0.01 / max(once, 1e-6)))  # loops of about 10 ms
    repeats = max(3, int(budget_s / max(once * number, 1e-6)))
    per_call = [t / number * 1e3 for t in timeit.Timer(fn).repeat(repeat=repeats, number=number)]
    return statistics.median(per_call), f"timeit, loops of {number} call{'s' if number > 1 else ''}"


def timer_agreement(device: str, quick: bool, rounds: int | None = None) -> Check:
    """attn's median (time_cpu: torch.utils.benchmark; time_cuda: CUDA events) against the
    independent timer on the same call. The two alternate in short rounds, the order swapped each
    round, so that a change in the machine's load falls on both alike; the median of the rounds'
    ratios must be within 5% of 1 (bench.profiler_fidelity found it the steadier figure when the
    machine is shared)."""
    rounds = rounds or (12 if quick else 24)
    spec = TIMING_SPEC.with_(device=device, dtype="float32" if device == "cpu" else "bfloat16")
    q, k, v = random_qkv(spec)
    var = variants.get("sdpa")
    on_cuda = device.startswith("cuda")

    def fn() -> None:
        with torch.no_grad():
            var.run(q, k, v, spec)

    fn()  # sdpa auto picks its backend once, outside either timer
    # each timer gets at least 8 calls a round, so neither median rests on two or three samples
    # (a mean of two blocks against a median of three read 10% apart on a loaded machine)
    once = min(timeit.Timer(fn).repeat(repeat=3, number=1))
    budget = max(0.05, 8 * once)  # seconds per timer per round
    mine, theirs, how = [], [], ""
    for i in range(rounds):
        # the order swaps every round, so neither timer always runs on the warmer (or the busier)
        # machine; each round's ratio is of two figures taken a second apart, under one load
        if i % 2:
            ms, how = independent_ms(fn, device, budget)
        t = timing.time_cuda(fn, budget) if on_cuda else timing.time_cpu(fn, budget)
        if not i % 2:
            ms, how = independent_ms(fn, device, budget)
        mine.append(t.median_ms)
        theirs.append(ms)
    a, b = statistics.median(mine), statistics.median(theirs)
    # the median of the rounds' ratios: on a loaded machine a load that changes between rounds
    # moves both figures of a round alike, and drops out of their ratio
    ratios = [m / t for m, t in zip(mine, theirs)]
    gap = abs(statistics.median(ratios) - 1)
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    noise = (q3 - q1) / 2  # half the rounds' interquartile range: how far the same pair wanders
    method = "cuda events" if on_cuda else "torch.utils.benchmark"
    figure = (f"attn {a:.3f} ms ({method}) vs {b:.3f} ms ({how}): {100 * gap:.1f}% apart (bound "
              f"{100 * TIMER_AGREEMENT:.0f}%; the median of {rounds} rounds' ratios, the order swapped every "
              f"round; the ratios wander ±{100 * noise:.1f}%)")
    what = f"sdpa at B1 H8 S{spec.seq} D64 causal {spec.dtype}, the same call for both"
    if gap <= TIMER_AGREEMENT:
        status = PASSED
    elif gap <= noise:
        # a busy machine: a 5% check cannot be made when one pair of timings wanders more than
        # that from round to round, and a failure would blame the profiler for the load. A timer
        # that is wrong by more than the wander (twice the time, say) still fails.
        status = NOT_HERE
        what = (f"this machine was too busy for a {100 * TIMER_AGREEMENT:.0f}% check: the rounds' ratios "
                f"wander ±{100 * noise:.1f}%, more than the timers' {100 * gap:.1f}%; run it again when quiet")
    else:
        status = FAILED
    return Check("profiler median against an independent timer", "timing", status, figure, what)


# -- sdpa auto's choice ---------------------------------------------------------------------------
def sdpa_choice(device: str, quick: bool) -> Check:
    from attn.variants import sdpa

    spec = TIMING_SPEC.with_(device=device, dtype="float32" if device == "cpu" else "bfloat16")
    runnable = [b for b in sdpa.BACKENDS if not sdpa.static_reasons(spec, device, b)]
    if len(runnable) < 2:
        return Check("sdpa auto's choice against each backend", "backend", NOT_HERE, "",
                     f"only {', '.join(runnable) or 'no backend'} can run here")
    q, k, v = random_qkv(spec)
    key = sdpa._shape_key(q, k, spec)
    with sdpa._lock:  # choose afresh: a choice made earlier in this process would be reused
        sdpa._auto_choice.pop(key, None)
    with torch.no_grad():
        chosen = sdpa.choose_backend(q, k, v, spec)
    budget = 0.2 if quick else 0.5
    times: dict[str, float] = {}
    for name in runnable:
        def call(name=name) -> None:
            with torch.no_grad(), sdpa.sdpa_kernel(sdpa.BACKENDS[name]):
                sdpa._call(q, k, v, spec)
        try:
            t = timing.time_cuda(call, budget) if device.startswith("cuda") else timing.time_cpu(call, budget)
            times[name] = t.median_ms
        except RuntimeError as err:
            times.pop(name, None)
            runnable = [r for r in runnable if r != name]
            if name == chosen:
                return Check("sdpa auto's choice against each backend", "backend", FAILED,
                             f"auto chose {chosen}, which then failed: {str(err).splitlines()[0]}")
    fastest = min(times, key=times.get)
    figure = f"auto chose {chosen}; " + ", ".join(f"{n} {ms:.3f} ms" for n, ms in sorted(times.items(), key=lambda x: x[1]))
    ok = times[chosen] <= times[fastest] * (1 + TIMER_AGREEMENT)
    return Check("sdpa auto's choice against each backend", "backend", PASSED if ok else FAILED,
                 figure + f" (the choice within {100 * TIMER_AGREEMENT:.0f}% of the fastest)",
                 f"backends that run here: {', '.join(runnable)}; S{spec.seq} causal {spec.dtype}")


# -- GPU only -------------------------------------------------------------------------------------
def nvml_energy(device: str, quick: bool) -> Check:
    name = "NVML energy over a known loop"
    if not device.startswith("cuda"):
        return Check(name, "gpu", NOT_HERE, "", NEEDS_CUDA)
    from attn.nvml import gpu_energy_per_call

    a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
    joules = gpu_energy_per_call(lambda: a @ a, device)
    if joules is None:
        return Check(name, "gpu", NOT_HERE, "", "NVML has no energy counter here (driver or GPU)")
    return Check(name, "gpu", PASSED if joules > 0 else FAILED, f"{joules:.4f} J per 4096² bf16 matmul",
                 "the driver's total-energy counter across at least 0.5 s of matmuls")


def memory_after_oom(device: str, quick: bool) -> Check:
    name = "memory returns to its baseline after an out-of-memory"
    if not device.startswith("cuda"):
        return Check(name, "gpu", NOT_HERE, "", NEEDS_CUDA)
    from attn.device import synchronize

    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    free, total = torch.cuda.mem_get_info(device)
    try:
        held = torch.empty(int(total * 2), dtype=torch.uint8, device=device)  # twice the GPU
        del held
        return Check(name, "gpu", FAILED, f"{2 * total:,} bytes were allocated on a {total:,}-byte GPU")
    except torch.OutOfMemoryError:
        pass
    torch.cuda.empty_cache()
    synchronize(device)
    after = torch.cuda.memory_allocated(device)
    return Check(name, "gpu", PASSED if after == before else FAILED,
                 f"allocated {before:,} bytes before, {after:,} after",
                 "an allocation of twice the GPU's memory, refused; the allocator keeps nothing of it")
