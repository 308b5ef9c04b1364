"""Does the profiler measure what torch.utils.benchmark measures, and what does profiling cost?

Two targets, on the CPU:
1. fidelity: attn's profile() median latency of `sdpa` within 5% of blocked_autorange's median
   for the same call, at seq 512..4096 (B=1, H=8, D=64, float32). The two are measured in
   alternation, round after round (the profiler first in even rounds, the reference first in
   odd ones), so that a change in the machine's load falls on both. Two figures: the median of
   each side over the rounds, and the median of the rounds' ratios (a pair measured a second
   apart shares the machine's load, so on a busy machine this is the steadier one). The
   reference runs with the process's torch thread count, as the profiler does (Timer's own
   default is one thread).
2. overhead: a profile call's wall time is at most 0.3 s plus 1.2 times the time of its own
   first call, warm-up and repeats (Profile.wall_s against Profile.timing_s).
One-off costs are paid before the rounds and shown apart: the first profile in a process starts
torch's profiler (kineto), and sdpa's `auto` times every backend once per shape.

    python -m bench.profiler_fidelity [--seqs 512,1024,2048,4096] [--rounds 7] [--budget 0.3]
                                      [--others dense,linear,sliding_window] [--threads N]
                                      [--json OUT]
(from the repo root)
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.benchmark import Timer

from attn import variants
from attn.device import cpu_name
from attn.inputs import random_qkv
from attn.measure import profile
from attn.spec import AttentionSpec

FIDELITY_TOLERANCE = 0.05
OVERHEAD_FIXED_S = 0.3
OVERHEAD_FACTOR = 1.2


def sdpa_spec(seq: int, **changes) -> AttentionSpec:
    return AttentionSpec(batch=1, heads=8, head_dim=64, seq=seq, dtype="float32", device="cpu").with_(**changes)


def reference_median_ms(spec: AttentionSpec, variant: str, budget_s: float) -> float:
    """blocked_autorange on the same call with the same inputs (random_qkv is seeded)."""
    q, k, v = random_qkv(spec)
    run = variants.get(variant).run
    with torch.inference_mode():
        run(q, k, v, spec)
        timer = Timer(stmt="run(q, k, v, spec)",
                      globals={"run": run, "q": q, "k": k, "v": v, "spec": spec},
                      num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=budget_s).median * 1e3


def first_call_s(spec: AttentionSpec, variant: str) -> float:
    """The one-off cost of a shape: sdpa auto times every backend on the first call."""
    q, k, v = random_qkv(spec)
    t0 = time.perf_counter()
    with torch.inference_mode():
        variants.get(variant).run(q, k, v, spec)
    return time.perf_counter() - t0


def overhead_ok(wall_s: float, timing_s: float) -> bool:
    return wall_s <= OVERHEAD_FIXED_S + OVERHEAD_FACTOR * timing_s


def fidelity(seq: int, rounds: int, budget_s: float) -> dict:
    spec = sdpa_spec(seq)
    one_off = first_call_s(spec, "sdpa")
    profiled, reference, calls = [], [], []
    for r in range(rounds):
        for side in (("profile", "reference") if r % 2 == 0 else ("reference", "profile")):
            if side == "reference":
                reference.append(reference_median_ms(spec, "sdpa", budget_s))
                continue
            prof = profile(spec, "sdpa", device="cpu", budget_s=budget_s)
            profiled.append(prof.latency_ms)
            calls.append({"wall_s": prof.wall_s, "timing_s": prof.timing_s, "backend": prof.backend,
                          "repeats": prof.repeats, "method": prof.timing_method})
    p, ref = statistics.median(profiled), statistics.median(reference)
    paired = statistics.median(a / b for a, b in zip(profiled, reference))
    overheads = [c["wall_s"] - c["timing_s"] for c in calls]
    return {"seq": seq, "first_call_s": one_off, "backend": calls[0]["backend"],
            "profile_ms": p, "reference_ms": ref, "diff_pct": 100 * (p / ref - 1),
            "paired_diff_pct": 100 * (paired - 1),
            "profile_rounds_ms": profiled, "reference_rounds_ms": reference, "calls": calls,
            "overhead_s_median": statistics.median(overheads), "overhead_s_max": max(overheads),
            "fidelity_ok": abs(p / ref - 1) <= FIDELITY_TOLERANCE,
            "paired_ok": abs(paired - 1) <= FIDELITY_TOLERANCE,
            "overhead_ok": all(overhead_ok(c["wall_s"], c["timing_s"]) for c in calls)}


def other_overheads(names: list[str], seq: int, budget_s: float) -> list[dict]:
    """The overhead target for other variants, for information: their float64 references cost
    more than sdpa's (one more reference, masks, feature maps)."""
    rows = []
    for name in names:
        spec = sdpa_spec(seq, causal=name == "sliding_window")
        first_call_s(spec, name)
        prof = profile(spec, name, device="cpu", budget_s=budget_s)
        rows.append({"variant": name, "seq": seq, "latency_ms": prof.latency_ms, "wall_s": prof.wall_s,
                     "timing_s": prof.timing_s, "overhead_ok": overhead_ok(prof.wall_s, prof.timing_s)})
    return rows


def print_tables(first: dict, results: list[dict], others: list[dict]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{cpu_name()}")
    print(f"first profile in the process (starts torch's profiler): {first['wall_s']:.2f} s wall, "
          f"of which {first['timing_s']:.3f} s timing\n")
    print("| seq | sdpa backend (first call, s) | profile median (ms) | blocked_autorange median (ms) "
          "| difference of medians | median of paired ratios | profile overhead (s), median / max "
          "| wall <= 0.3 + 1.2 x timing, every round |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['seq']} | {r['backend']} ({r['first_call_s']:.1f}) | {r['profile_ms']:.2f} "
              f"| {r['reference_ms']:.2f} | {r['diff_pct']:+.1f}% {'ok' if r['fidelity_ok'] else 'OVER'} "
              f"| {r['paired_diff_pct']:+.1f}% {'ok' if r['paired_ok'] else 'OVER'} "
              f"| {r['overhead_s_median']:.2f} / {r['overhead_s_max']:.2f} "
              f"| {'yes' if r['overhead_ok'] else 'NO'} |")
    if others:
        print("\n| variant (seq 1024) | median (ms) | wall (s) | timing (s) | wall <= 0.3 + 1.2 x timing |")
        print("| --- | --- | --- | --- | --- |")
        for o in others:
            print(f"| {o['variant']} | {o['latency_ms']:.2f} | {o['wall_s']:.2f} | {o['timing_s']:.2f} "
                  f"| {'yes' if o['overhead_ok'] else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", default="512,1024,2048,4096")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of repeats per measurement")
    parser.add_argument("--others", default="dense,linear,sliding_window",
                        help="variants whose profile overhead is shown at seq 1024 ('' for none)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tiny = profile(AttentionSpec(seq=16, heads=1, head_dim=8), "dense", device="cpu", budget_s=0.01)
    first = {"wall_s": tiny.wall_s, "timing_s": tiny.timing_s}
    results = [fidelity(int(s), args.rounds, args.budget) for s in args.seqs.split(",")]
    others = other_overheads([n for n in args.others.split(",") if n], 1024, args.budget)
    print_tables(first, results, others)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(),
                       "rounds": args.rounds, "budget_s": args.budget, "first_profile": first,
                       "fidelity": results, "others": others}, f, indent=1)


if __name__ == "__main__":
    main()
