"""A 16-point sweep run here (attn.sweep.run_sweep, the local worker's loop) and on a local Ray
instance with two workers (attn.cluster.run_sweep_on_ray): the wall time of each, Ray's start-up
on its own, and whether the points agree (statuses, FLOPs, bytes) and how their latencies differ.

16 points: sdpa and linear, causal, B=1 H=8 D=64 float32, seq 2^5 .. 2^12, `--budget` seconds of
repeats a point. The local sweep runs first and again last, so a change of the machine's load
during the run shows as a difference between the two. Ray's start-up is `ray.init(num_cpus=2, include_dashboard=False)` until it returns,
then the first task's round trip (a worker process started and torch imported in it). The Ray
sweeps run after that, on the warm instance: one CPU a task (two points at once, torch on one
thread each) and two CPUs a task (one point at a time, torch on two threads, as the local worker).
The machine's load average is printed before and after: on a shared 2-core machine it moves every
wall time here.

    python -m bench.ray_sweep [--budget 0.2] [--json OUT]          (from the repo root)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from attn import cluster
from attn.device import cpu_name
from attn.sweep import run_sweep
from attn.spec import AttentionSpec

BASE = AttentionSpec(batch=1, seq=64, heads=8, head_dim=64, causal=True, device="cpu")
NAMES = ["sdpa", "linear"]
XS = [2**e for e in range(5, 13)]  # 8 lengths x 2 variants = 16 points


def _key(p: dict) -> tuple:
    return (p["variant"], p["x"], p["status"], p["flops"], p["bytes_read"], p["saved_bytes"])


def _warm_task() -> float:
    """The first task's round trip: a worker process and torch imported in it."""
    import ray

    @ray.remote(num_cpus=1)
    def imports_torch() -> str:
        import torch

        return torch.__version__

    started = time.perf_counter()
    ray.get(imports_torch.remote())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.2, help="seconds of repeats a point")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    import ray

    out = {"cpu": cpu_name(), "cores": os.cpu_count(), "budget_s": args.budget, "points": len(NAMES) * len(XS),
           "load_before": os.getloadavg()}
    started = time.perf_counter()
    here = run_sweep(BASE, NAMES, XS, device="cpu", budget_s=args.budget)
    out["local_s"] = time.perf_counter() - started
    local = [p.__dict__ for p in here.points]
    per_point = {(p["variant"], p["x"]): {"local_ms": p["latency_ms"]} for p in local}

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out["ray_init_s"] = time.perf_counter() - started
    out["ray_first_task_s"] = _warm_task()
    for cpus in (1, 2):
        started = time.perf_counter()
        there = cluster.run_sweep_on_ray(BASE, NAMES, XS, budget_s=args.budget, cpus_per_task=cpus)
        wall = time.perf_counter() - started
        ratios = [b["latency_ms"] / a["latency_ms"] for a, b in zip(local, there["points"])
                  if a["status"] == b["status"] == "ok"]
        for p in there["points"]:
            per_point[(p["variant"], p["x"])][f"ray_{cpus}cpu_ms"] = p["latency_ms"]
        out[f"ray_{cpus}cpu"] = {
            "wall_s": wall, "same_points": [_key(p) for p in there["points"]] == [_key(p) for p in local],
            "latency_over_local_median": statistics.median(ratios), "latency_over_local_min": min(ratios),
            "latency_over_local_max": max(ratios), "torch_threads": there["environment"].get("torch_threads")}
    started = time.perf_counter()
    ray.shutdown()
    out["ray_shutdown_s"] = time.perf_counter() - started
    out["load_before_second_local"] = os.getloadavg()
    started = time.perf_counter()
    again = run_sweep(BASE, NAMES, XS, device="cpu", budget_s=args.budget)
    out["local_again_s"] = time.perf_counter() - started
    for p in again.points:
        per_point[(p.variant, p.x)]["local_again_ms"] = p.latency_ms
    out["per_point_ms"] = {f"{v} {x}": row for (v, x), row in per_point.items()}
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
