"""Pooled attention maps at length on the CPU: time and peak extra memory of `pooled_map`.

One head, 512 x 512 cells, head_dim 64, causal, for dense and sliding_window (window 256) at
seq 16384 and 32768. Time is wall time of whole calls (best and median of the repeats, after one
warm-up at the smaller size); memory is the peak of torch's CPU allocations during one call above
what was allocated before it, from the profiler's memory events (a separate call: profiling
slows it down). Also, for scale, the time of `head_stats` on the same head. Targets: 16384 in <= 5 s; 32768 in <= 20 s with <= 512 MiB extra.

    python -m bench.maps_cpu [--repeats 3] [--json]   (from the repo root)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from attn.inputs import random_qkv
from attn.maps import SLAB_ELEMENTS, head_stats, pooled_map
from attn.memory import cpu_peak_bytes
from attn.spec import AttentionSpec

SEQS = (16384, 32768)
VARIANTS = ("dense", "sliding_window")
MAX_SIZE = 512
TARGET_S = {16384: 5.0, 32768: 20.0}
TARGET_BYTES = 512 * 2**20


def measure_one(seq: int, variant: str, repeats: int) -> dict:
    spec = AttentionSpec(seq=seq, heads=1, head_dim=64, causal=True)
    q, k, _ = random_qkv(spec)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pooled_map(q, k, spec, variant, max_size=MAX_SIZE)
        times.append(time.perf_counter() - t0)
    peak = cpu_peak_bytes(lambda: pooled_map(q, k, spec, variant, max_size=MAX_SIZE))
    stats_times = []
    for _ in range(min(repeats, 2)):  # not a target; for scale (the sort of every row dominates)
        t0 = time.perf_counter()
        head_stats(q, k, spec, variant)
        stats_times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "variant": variant,
        "seq": seq,
        "best_s": best,
        "median_s": statistics.median(times),
        "peak_bytes": peak,
        "head_stats_best_s": min(stats_times),
        "target_s": TARGET_S[seq],
        "met": best <= TARGET_S[seq] and (seq < 32768 or peak <= TARGET_BYTES),
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| variant | seq | best (s) | median (s) | peak extra (MiB) | target | met | head_stats, best (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        target = f"<= {r['target_s']:.0f} s" + (", <= 512 MiB" if r["seq"] >= 32768 else "")
        lines.append(f"| {r['variant']} | {r['seq']} | {r['best_s']:.2f} | {r['median_s']:.2f} | "
                     f"{r['peak_bytes'] / 2**20:.1f} | {target} | {'yes' if r['met'] else 'no'} | "
                     f"{r['head_stats_best_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    spec = AttentionSpec(seq=1024, heads=1, head_dim=64, causal=True)
    pooled_map(*random_qkv(spec)[:2], spec, "dense", max_size=MAX_SIZE)  # warm-up
    load_before = os.getloadavg()[0]
    rows = [measure_one(seq, v, args.repeats) for seq in SEQS for v in VARIANTS]
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "slab_elements": SLAB_ELEMENTS,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.json:
        print(json.dumps({"rows": rows, **info}, indent=1))
    else:
        print(markdown(rows))
        print(f"\ntorch {info['torch']}, python {info['python']}, {info['threads']} threads, "
              f"load average {info['load_average'][0]} before, {info['load_average'][1]} after")


if __name__ == "__main__":
    main()
