"""What the telemetry sampler costs: CPU time per second of wall time, as % of one core.

Two measures over the same duration:
- busy: CPU time the sampling thread spends inside its ticks (time.thread_time around each);
- process: the whole process's CPU time while the main thread sleeps, with the sampler running,
  minus the same without it, which also counts the thread's wake-ups and the GIL hand-offs.

    python -m bench.telemetry_overhead [--seconds 20] [--interval 0.1] [--json]   (from the repo root)
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import psutil

from attn.telemetry import Sampler


def process_cpu_s_while_sleeping(seconds: float) -> float:
    c0 = time.process_time()
    time.sleep(seconds)
    return time.process_time() - c0


def measure(seconds: float, interval_s: float) -> dict:
    baseline = process_cpu_s_while_sleeping(seconds)
    with Sampler(interval_s=interval_s) as sampler:
        with_sampler = process_cpu_s_while_sleeping(seconds)
    ticks = sampler.ticks
    return {
        "seconds": seconds,
        "interval_s": interval_s,
        "ticks": ticks,
        "gpu_status": sampler.gpu_status,
        "busy_pct_of_core": 100 * sampler.busy_s / seconds,
        "busy_us_per_tick": 1e6 * sampler.busy_s / max(ticks, 1),
        "process_pct_of_core": 100 * (with_sampler - baseline) / seconds,
        "python": platform.python_version(),
        "psutil": psutil.__version__,
        "cpus": psutil.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = measure(args.seconds, args.interval)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"sampler at {1 / args.interval:.0f} Hz for {args.seconds:.0f} s: {r['ticks']} ticks "
          f"({r['gpu_status']})")
    print(f"  inside ticks: {r['busy_pct_of_core']:.3f}% of one core, {r['busy_us_per_tick']:.0f} us per tick")
    print(f"  whole process, with minus without: {r['process_pct_of_core']:.3f}% of one core")


if __name__ == "__main__":
    main()
