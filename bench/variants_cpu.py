"""CPU speed of the masked variants against `sdpa` causal on the same inputs, as ratios.

The target (issue 2): at seq 4096, B=1, H=8, D=64, float32, `sliding_window` with window 256 at
least 5x faster than `sdpa` causal (its mask has about 8x fewer pairs), and `block_sparse` fast
in proportion to its pairs. Compared here:
- the blockwise CPU kernel as the variants run it (`attn.variants.softmax.blockwise_attention`
  with its cached plan) at several query chunk sizes, against plainer forms of the same loop
  kept below as experiments: SDPA per chunk without a plan, baddbmm + softmax per chunk, and
  the first version (matmul, masked_fill, softmax, nan_to_num);
- FlexAttention compiled for the CPU at several block sizes (the first call, compile and block
  mask, is reported apart from the steady time);
- `sdpa` causal on auto, flash and math.

On a machine shared with other work single timings drift, so every candidate is timed right
after a fresh timing of the baseline (`sdpa` causal, auto), each pair after waiting (a while)
for the CPUs to go quiet, over several rounds; the speed-up reported is the median over rounds
of baseline / candidate. Times are medians of `torch.utils.benchmark.Timer.blocked_autorange`
on all of torch's threads (the Timer's default is one).

    python -m bench.variants_cpu [--seq 4096] [--rounds 5] [--min-run-time 0.3] [--threads N]
                                 [--chunks 16,32,64,128,256] [--no-flex] [--no-math]
                                 [--no-experiments]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import psutil
import torch
from torch.utils.benchmark import Timer

from attn import variants
from attn.device import cpu_name
from attn.inputs import random_qkv
from attn.masks import Mask
from attn.spec import AttentionSpec
from attn.variants import masked, softmax
from attn.variants.gqa import repeat_kv


# -- plainer forms of the blockwise loop, kept to show what each step of the kernel is worth ----
def _chunks(k, v, spec: AttentionSpec, mask: Mask, seq: int, chunk: int, widen: bool):
    """(lo, hi, k_c, v_c, allowed) per chunk of queries that sees some key; k and v widened to
    every query head when `widen` (for plain matmuls)."""
    for lo in range(0, seq, chunk):
        hi = min(seq, lo + chunk)
        keys = mask.keys_for(lo, hi)
        if keys.numel() == 0:
            continue
        first, last = int(keys[0]), int(keys[-1])
        if last - first + 1 == keys.numel():
            k_c, v_c = k[:, :, first:last + 1], v[:, :, first:last + 1]
        else:
            k_c, v_c = k.index_select(2, keys), v.index_select(2, keys)
        if widen:
            k_c, v_c = repeat_kv(k_c, spec.groups), repeat_kv(v_c, spec.groups)
        yield lo, hi, k_c, v_c, mask.fn(torch.arange(lo, hi)[:, None], keys[None, :])


def masked_fill_kernel(q, k, v, spec: AttentionSpec, mask: Mask, chunk: int):
    """The first CPU kernel: per chunk, scores, masked_fill(-inf), softmax, nan_to_num, @ v."""
    b, h, s, d = q.shape
    out = q.new_zeros(b, h, s, v.shape[-1])
    for lo, hi, k_c, v_c, allowed in _chunks(k, v, spec, mask, s, chunk, widen=True):
        scores = (q[:, :, lo:hi] @ k_c.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        out[:, :, lo:hi] = softmax.masked_softmax(scores, allowed) @ v_c
    return out


def additive_bias_kernel(q, k, v, spec: AttentionSpec, mask: Mask, chunk: int):
    """Per chunk: scale folded into q once, the mask added as a -inf bias inside the matmul
    (baddbmm), and the NaN pass only for chunks that have a row with no visible key."""
    b, h, s, d = q.shape
    out = q.new_zeros(b, h, s, v.shape[-1])
    q = q * (1.0 / math.sqrt(d))
    for lo, hi, k_c, v_c, allowed in _chunks(k, v, spec, mask, s, chunk, widen=True):
        bias = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill_(~allowed, float("-inf"))
        c, n = allowed.shape
        weights = torch.baddbmm(bias.expand(b * h, c, n), q[:, :, lo:hi].reshape(b * h, c, d),
                                k_c.reshape(b * h, n, d).transpose(1, 2)).softmax(-1)
        if not bool(allowed.any(-1).all()):
            weights = weights.nan_to_num_(0.0)
        out[:, :, lo:hi] = torch.bmm(weights, v_c.reshape(b * h, n, -1)).view(b, h, c, -1)
    return out


def sdpa_per_chunk_kernel(q, k, v, spec: AttentionSpec, mask: Mask, chunk: int):
    """SDPA (the flash kernel) per chunk with its boolean mask, worked out on every call."""
    b, h, s, _ = q.shape
    out = q.new_zeros(b, h, s, v.shape[-1])
    for lo, hi, k_c, v_c, allowed in _chunks(k, v, spec, mask, s, chunk, widen=False):
        out[:, :, lo:hi] = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, lo:hi], k_c, v_c, attn_mask=allowed, enable_gqa=spec.groups > 1)
    return out


def planned_kernel(name: str):
    """The library's kernel as the variant calls it: the plan cached, block_sparse's chunks
    lined up with its blocks."""
    def run(q, k, v, spec: AttentionSpec, mask: Mask, chunk: int):
        phase = -spec.position_offset if name == "block_sparse" else 0
        return softmax.blockwise_attention(q, k, v, spec, mask, chunk,
                                           masked.mask_cache_key(name, spec, "cpu"), phase)
    return run


LIBRARY = "planned SDPA runs (attn)"
EXPERIMENTS = {
    "SDPA per chunk": sdpa_per_chunk_kernel,
    "baddbmm + softmax per chunk": additive_bias_kernel,
    "masked_fill + nan_to_num per chunk (first version)": masked_fill_kernel,
}


# -- timing ------------------------------------------------------------------------------------
@dataclass
class Candidate:
    group: str  # what it computes: "sdpa causal", "sliding_window", "block_sparse"
    kernel: str
    settings: str
    fn: Callable[[], torch.Tensor]
    pairs: int
    times_ms: list[float]
    ratios: list[float]  # baseline / this, one per round
    compile_s: float | None = None
    error: float | None = None


def median_ms(fn: Callable[[], object], min_run_time: float) -> float:
    # Timer runs on one thread unless told: time on all of torch's threads, as the variants run
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def kernel_error(out: torch.Tensor, name: str, q, k, v, spec: AttentionSpec) -> float:
    """||out - ref|| / ||ref|| on 64 spread query rows, against the variant's float64 math."""
    rows = torch.linspace(0, spec.seq - 1, 64).long()
    w = variants.get(name).weights(q.double(), k.double(), spec, rows)
    ref = w @ repeat_kv(v.double(), spec.groups)
    return float((out[:, :, rows].double() - ref).norm() / ref.norm())


def flex_candidates(name: str, spec: AttentionSpec, q, k, v, block_sizes: list[int],
                    pairs: int) -> list[Candidate]:
    """FlexAttention per block size; the first call (compile + block mask) is timed apart."""
    out = []
    mask = variants.get(name).mask(spec)
    for size in block_sizes:
        masked.FLEX_BLOCK_SIZE = size

        def run(size=size):
            masked.FLEX_BLOCK_SIZE = size  # the block mask cache is keyed by it
            return masked.flex_attention(q, k, v, spec, mask, name)

        t0 = time.perf_counter()
        first = run()
        first_s = time.perf_counter() - t0
        steady_s = median_ms(run, 0.2) / 1e3
        cand = Candidate(name, "FlexAttention (compiled)", f"BLOCK_SIZE {size}", run, pairs, [], [],
                         compile_s=first_s - steady_s)
        cand.error = kernel_error(first, name, q, k, v, spec)
        out.append(cand)
    return out


def build(spec: AttentionSpec, q, k, v, chunks: list[int], other_chunk: int,
          flex_blocks: list[int], with_math: bool,
          with_experiments: bool = True) -> tuple[Candidate, list[Candidate]]:
    sdpa = variants.get("sdpa")
    causal_pairs = sdpa.pairs(spec)
    baseline = Candidate("sdpa causal", "sdpa", "backend auto (" + variants.sdpa.backend_used(
        q, k, v, spec) + ")", lambda: sdpa.run(q, k, v, spec), causal_pairs, [], [])
    cands: list[Candidate] = []
    for backend in ("flash", "math") if with_math else ("flash",):
        s = spec.with_(backend=backend)
        cands.append(Candidate("sdpa causal", "sdpa", f"backend {backend}",
                               lambda s=s: sdpa.run(q, k, v, s), causal_pairs, [], []))
    sw, bs = variants.get("sliding_window"), variants.get("block_sparse")
    sw_mask, bs_mask = sw.mask(spec), bs.mask(spec)
    kernels = [(LIBRARY, planned_kernel, chunks)]
    if with_experiments:
        kernels += [(label, lambda name, fn=fn: fn, [other_chunk])
                    for label, fn in EXPERIMENTS.items()]
    # the lambdas' defaults bind each candidate's kernel and chunk when it is made, on purpose
    for label, make, sizes in kernels:
        for chunk in sizes:
            cands.append(Candidate("sliding_window", label, f"window {spec.window}, chunk {chunk}",
                                   lambda fn=make("sliding_window"), c=chunk: fn(q, k, v, spec,  # noqa: B008
                                                                               sw_mask, c),
                                   sw.pairs(spec), [], []))
        # block_sparse's keys are chosen per query block, so its chunk is the block
        cands.append(Candidate("block_sparse", label,
                               f"block {spec.block}, n_global {spec.n_global}, "
                               f"n_random {spec.n_random}",
                               lambda fn=make("block_sparse"): fn(q, k, v, spec, bs_mask, spec.block),  # noqa: B008
                               bs.pairs(spec), [], []))
    for cand in cands:
        if cand.group != "sdpa causal":
            name = cand.group
            cand.error = kernel_error(cand.fn(), name, q, k, v, spec)
    if flex_blocks:
        cands += flex_candidates("sliding_window", spec, q, k, v, flex_blocks, sw.pairs(spec))
        cands += flex_candidates("block_sparse", spec, q, k, v, flex_blocks, bs.pairs(spec))
    return baseline, cands


def wait_for_idle(busy_below_pct: float, max_wait_s: float) -> bool:
    """Wait until other work leaves the CPUs mostly idle (over one second); False on timeout."""
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        if psutil.cpu_percent(interval=1.0) < busy_below_pct:
            return True
    return False


def measure(baseline: Candidate, cands: list[Candidate], rounds: int, min_run_time: float,
            idle_below_pct: float, idle_wait_s: float) -> int:
    """Time every candidate right after the baseline, `rounds` times; the number of pairs
    timed while other work kept the CPUs busy."""
    busy = 0
    for r in range(rounds):
        for cand in cands:
            # math at 4096 takes seconds a call: one round says enough
            if cand.settings == "backend math" and r > 0:
                continue
            busy += not wait_for_idle(idle_below_pct, idle_wait_s)
            base_ms = median_ms(baseline.fn, min_run_time)
            ms = median_ms(cand.fn, min_run_time)
            baseline.times_ms.append(base_ms)
            cand.times_ms.append(ms)
            cand.ratios.append(base_ms / ms)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return busy


def table(spec: AttentionSpec, baseline: Candidate, cands: list[Candidate]) -> str:
    lines = ["| computes | kernel | settings | median ms | speed-up vs sdpa causal (rounds) "
             "| pairs ratio | kernel_error | compile s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
             f"| sdpa causal | sdpa | {baseline.settings} | "
             f"{statistics.median(baseline.times_ms):.1f} | 1 (baseline) | 1 | | |"]
    for c in cands:
        speed = statistics.median(c.ratios)
        spread = f" ({min(c.ratios):.2f}-{max(c.ratios):.2f})" if len(c.ratios) > 1 else ""
        error = f"{c.error:.1e}" if c.error is not None else ""
        compile_s = f"{c.compile_s:.1f}" if c.compile_s is not None else ""
        lines.append(f"| {c.group} | {c.kernel} | {c.settings} | {statistics.median(c.times_ms):.1f} "
                     f"| **{speed:.2f}x**{spread} | {baseline.pairs / c.pairs:.2f}x | {error} "
                     f"| {compile_s} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--chunks", default="16,32,64,128,256", help="for the library kernel")
    parser.add_argument("--other-chunk", type=int, default=64, help="for the plainer kernels")
    parser.add_argument("--flex-blocks", default="64,128,256")
    parser.add_argument("--no-flex", action="store_true")
    parser.add_argument("--no-math", action="store_true", help="skip sdpa math (seconds a call)")
    parser.add_argument("--no-experiments", action="store_true",
                        help="only the library's kernel for the masked variants")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--idle-below", type=float, default=25.0,
                        help="before each pair, wait until the CPUs are less busy than this (%%)")
    parser.add_argument("--idle-wait", type=float, default=30.0, help="seconds to wait at most")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    spec = AttentionSpec(batch=1, seq=args.seq, heads=args.heads, head_dim=args.head_dim,
                         causal=True, window=args.window, block=args.block)
    q, k, v = random_qkv(spec)
    chunks = [int(c) for c in args.chunks.split(",")]
    flex_blocks = [] if args.no_flex else [int(b) for b in args.flex_blocks.split(",")]
    load_before = os.getloadavg()[0]
    baseline, cands = build(spec, q, k, v, chunks, args.other_chunk, flex_blocks,
                            not args.no_math, not args.no_experiments)
    busy = measure(baseline, cands, args.rounds, args.min_run_time, args.idle_below,
                   args.idle_wait)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs ({cpu_name()}), "
          f"python {platform.python_version()}; B={spec.batch} H={spec.heads} D={spec.head_dim} "
          f"seq={spec.seq} float32 causal; {args.rounds} rounds, min_run_time {args.min_run_time} s; "
          f"CUDA available: {torch.cuda.is_available()}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; {busy} of {sum(len(c.ratios) for c in cands)} pairs "
          f"timed while other work kept the CPUs over {args.idle_below:.0f}% busy")
    print()
    print(table(spec, baseline, cands))


if __name__ == "__main__":
    main()
