"""One command for a lent GPU: `attn selftest --device cuda` first, then the anchor comparisons
and the regime tables: every variant timed against the anchors, the device's calibration, sdpa
auto's choices, train and decode, and an out-of-memory sweep that must leave device memory where
it found it.

Sections (all by default; pick with --sections):
- selftest: attn.selftest on the device (the same as `attn selftest --device cuda`): every
  variant's output, gradients and decode step against float64, FLOPs against closed forms and
  torch's counter, the profiler's median against triton's do_bench on the same call, sdpa auto's
  choice against each backend, NVML energy, memory after an out-of-memory. Saved as a run of kind
  selftest; its table heads the report. (It replaces the former fidelity section, whose
  comparison is its timer row.)
- timing: every case (variants, sdpa's backends named one by one, two sliding windows) at
  B=4, H=16, D=128, bfloat16, seq 1024..16384, causal and not, through attn.measure.profile:
  median and p10/p90, TFLOP/s, share of the roofline, peak memory, and the kernel error, which
  must be within 1e-2 in bfloat16. A case stops at its first out-of-memory.
- auto: which backend sdpa's `auto` chose at each shape, and what each backend took.
- calibration: measured matmul rates and copy bandwidth (attn.calibrate, forced).
- train: forward + backward (attn.measure.profile, mode "train") for dense, sdpa (auto, and the
  flash, efficient and cuDNN backends where they run) and sliding_window (window 256), causal,
  seq 1024..8192: forward and backward medians; what the forward saves for the backward against
  the cost model's saved_bytes, and the step's peak against its step_bytes (ratios); the
  gradients' error against float64 autograd; TFLOP/s on useful FLOPs and on executed FLOPs
  (FlashAttention's count, where the backward recomputes the scores). bench/gpu_regimes.py.
- decode: one new token (mode "decode") against a KV cache of 4k..128k keys, batch 1 and 8, for
  sdpa with 16, 4 and 1 KV heads (multi-head, grouped-query with the 4x sharing of 8 -> 2,
  multi-query), sliding_window (window 4096: a rolling cache) and linear (a recurrent state):
  per-token latency, bytes read, GB/s achieved, the bandwidth floor (bytes read over the
  calibrated copy bandwidth) and the latency's multiple of it.
- oom: a sweep of quadratic-memory variants under an allocator capped to part of the device
  (torch.cuda.set_per_process_memory_fraction), so the cost model's pre-check passes and the
  allocation itself fails; then the memory wall is bisected with real allocations. Device memory
  allocated before and after must be equal.

With --anchors PATH (an independent measurement of the same shapes, e.g. an H100 baseline with
rows of S, causal, impl, ms, tflops, peak_MiB), each timing row gets its ratio to the anchor;
the anchors hold forward timings only, so the train and decode rows say there is none.
--dry-run runs the same code on the CPU with tiny sizes (do_bench is replaced by
torch.utils.benchmark, the allocator cap by the sweep's memory budget), to check the script.

    python -m bench.gpu [--out results.json] [--anchors PATH] [--sections selftest,timing,...]
                        [--cases dense,sdpa:flash] [--seqs 1024,4096] [--causal both|true|false]
                        [--train-seqs 1024,8192] [--contexts 4096,131072]
                        [--budget 0.2] [--quick] [--dry-run]           (from the repo root)

--cases names cases of any section (timing, train, decode); each runs those it has.

A full run on an H100 takes about 20 to 30 minutes, most of it FlexAttention compiling each
shape of the masked variants and the float64 error references; train and decode take a few
minutes each (--sections train,decode). Split it with --sections, --cases and --causal to fit
shorter sessions.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import torch

from attn import calibrate
from attn.device import device_summary
from attn.environment import environment
from attn.inputs import random_qkv
from attn.measure import DoesNotFit, profile
from attn.sweep import run_sweep

from bench import gpu_regimes
from bench.gpu_cases import CASES, Case, select_cases, with_anchor_ratios
from bench.gpu_config import Config, dry_run_config, gpu_config
from bench.gpu_report import report
from bench.tables import first_line

# what to run is bench/gpu_cases.py, the sizes bench/gpu_config.py, the report bench/gpu_report.py;
# the names the tests read are here too
__all__ = ["CASES", "SECTIONS", "Case", "dry_run_config", "main", "report", "select_cases", "with_anchor_ratios"]

SECTIONS = ("selftest", "timing", "auto", "calibration", "train", "decode", "oom")


# -- the sections (the CUDA calls are here, and only here) ------------------------------------
def timing(cfg: Config, cases: tuple[Case, ...], causal_modes: tuple[bool, ...]) -> list[dict]:
    rows = []
    for causal in causal_modes:
        for case in cases:
            if case.causal_only and not causal:
                continue
            for seq in cfg.seqs:
                row = {"case": case.label, "variant": case.variant, "seq": seq, "causal": causal,
                       "anchor": case.anchor}
                rows.append(row)
                try:
                    spec = cfg.spec(seq, causal, **dict(case.changes))
                    prof = profile(spec, case.variant, device=cfg.device, budget_s=cfg.budget_s)
                except DoesNotFit as err:
                    row.update(status="oom", message=first_line(err))
                    break  # longer sequences only need more
                except ValueError as err:
                    row.update(status="unsupported", message=first_line(err))
                    break  # the same reason holds at every length
                except Exception as err:  # noqa: BLE001 -- a compile or kernel failure: one row, not the run
                    row.update(status="error", message=first_line(err))
                    continue
                row.update(status="ok", latency_ms=prof.latency_ms, p10_ms=prof.p10_ms,
                           p90_ms=prof.p90_ms, repeats=prof.repeats, tflops=prof.achieved_tflops,
                           roofline_pct=prof.roofline_pct, peak_mib=prof.peak_bytes / 2**20,
                           kernel_error=prof.kernel_error, approx_error=prof.approx_error,
                           backend=prof.backend, energy_j=prof.energy_j, wall_s=prof.wall_s,
                           error_ok=prof.kernel_error is not None
                           and prof.kernel_error <= cfg.error_tolerance)
                print(f"  {case.label:20} causal={causal!s:5} seq {seq:>6}: {prof.latency_ms:9.3f} ms "
                      f"{prof.achieved_tflops:8.2f} TFLOP/s  kernel_error {prof.kernel_error:.1e}",
                      flush=True)
    return rows


def auto_choices(cfg: Config, causal_modes: tuple[bool, ...]) -> list[dict]:
    """sdpa auto at each shape: the backend it keeps and what it found for each."""
    from attn.variants import sdpa

    rows = []
    for causal in causal_modes:
        for seq in cfg.seqs:
            spec = cfg.spec(seq, causal)
            row = {"seq": seq, "causal": causal}
            try:
                q, k, v = random_qkv(spec)
                with torch.inference_mode():
                    row["chosen"] = sdpa.backend_used(q, k, v, spec)
                row["reasons"] = sdpa.auto_reasons(q, k, spec)
            except Exception as err:  # noqa: BLE001
                row["error"] = first_line(err)
            finally:
                q = k = v = None
                if cfg.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            rows.append(row)
    return rows


def selftest_section(cfg: Config, quick: bool) -> dict:
    """attn selftest on the device, saved as a run (the dry run: the CPU, quick)."""
    from attn import selftest

    def progress(done: int, total: int, name: str) -> None:
        if done < total:
            print(f"  [{done + 1}/{total}] {name}", flush=True)

    result = selftest.run_selftest(cfg.device, quick=quick, progress=progress)
    result["run_id"] = selftest.save(result)
    return result


def calibration(cfg: Config, anchors: dict | None) -> dict:
    cal = calibrate.calibrate(cfg.device, force=True).to_dict()
    if anchors:
        if anchors.get("bf16_mm_tflops") and "bfloat16" in cal["matmul_tflops"]:
            cal["bf16_vs_anchor"] = cal["matmul_tflops"]["bfloat16"] / anchors["bf16_mm_tflops"]
        if anchors.get("copy_GBps"):
            cal["bandwidth_vs_anchor"] = cal["bandwidth_gbps"] / anchors["copy_GBps"]
    return cal


def oom_sweep(cfg: Config, names: tuple[str, ...] = ("dense", "topk")) -> dict:
    """Quadratic-memory variants until they no longer fit; memory must come back to baseline."""
    on_cuda = cfg.device.startswith("cuda")
    before = reserved_before = None
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before, reserved_before = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
        if cfg.oom_fraction:
            torch.cuda.set_per_process_memory_fraction(cfg.oom_fraction)
    t0 = time.perf_counter()
    try:
        result = run_sweep(cfg.spec(cfg.oom_seqs[0], False), list(names), list(cfg.oom_seqs),
                           device=cfg.device, budget_s=cfg.budget_s,
                           memory_budget_bytes=cfg.oom_budget_bytes)
    finally:
        if on_cuda and cfg.oom_fraction:
            torch.cuda.set_per_process_memory_fraction(1.0)
    seconds = time.perf_counter() - t0
    after = reserved_after = None
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        after, reserved_after = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    points = [{"variant": p.variant, "seq": p.x, "status": p.status, "message": p.message,
               "latency_ms": p.latency_ms} for p in result.points]
    return {"seconds": seconds, "points": points, "walls": [asdict(w) for w in result.walls],
            "allocated_before": before, "allocated_after": after,
            "reserved_before": reserved_before, "reserved_after": reserved_after,
            "oom_seen": any(p["status"] == "oom" for p in points),
            "at_baseline": None if before is None else after == before,
            "allocator_cap": cfg.oom_fraction, "sweep_budget_bytes": cfg.oom_budget_bytes}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--anchors", help="JSON of independent measurements to compare with")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--cases", help="comma-separated case labels (default: all)")
    parser.add_argument("--seqs", help="comma-separated sequence lengths for the timing section")
    parser.add_argument("--train-seqs", help="comma-separated sequence lengths for the train section")
    parser.add_argument("--contexts", help="comma-separated cache lengths for the decode section")
    parser.add_argument("--causal", choices=("both", "true", "false"), default="both")
    parser.add_argument("--budget", type=float, help="seconds of repeats per measurement")
    parser.add_argument("--quick", action="store_true", help="the self-test's quick run (the dry run's)")
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU, tiny sizes")
    args = parser.parse_args(argv)

    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}: choose from {', '.join(SECTIONS)}")
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --dry-run to check the script on the CPU")
    cfg: Config = dry_run_config() if args.dry_run else gpu_config()
    if args.budget:
        cfg = replace(cfg, budget_s=args.budget)
    for flag, name in ((args.seqs, "seqs"), (args.train_seqs, "train_seqs"),
                       (args.contexts, "decode_contexts")):
        if flag:
            cfg = replace(cfg, **{name: tuple(int(s) for s in flag.split(","))})
    select_cases(args.cases)  # refuses a label no section has, before anything runs
    causal_modes = {"both": (False, True), "true": (True,), "false": (False,)}[args.causal]
    anchors = None
    if args.anchors:
        with open(args.anchors, encoding="utf-8") as fh:
            anchors = json.load(fh)

    results: dict = {"config": asdict(cfg), "environment": environment(cfg.device),
                     "device": device_summary(cfg.device), "sections": sections}
    if anchors:
        results["anchors_device"] = anchors.get("device") or args.anchors
        for section in ("train", "decode"):
            if section in sections:
                results[f"{section}_anchors"] = gpu_regimes.NO_ANCHORS
    started = time.perf_counter()
    if "selftest" in sections:  # first: whether to trust what follows
        print("selftest", flush=True)
        results["selftest"] = selftest_section(cfg, quick=args.quick or args.dry_run)
    if "calibration" in sections:  # first, so the timing rows get their share of the roofline
        print("calibration", flush=True)
        results["calibration"] = calibration(cfg, anchors)
    if "timing" in sections:
        print("timing", flush=True)
        results["timing"] = with_anchor_ratios(timing(cfg, select_cases(args.cases), causal_modes), anchors)
    if "auto" in sections:
        print("sdpa auto", flush=True)
        results["auto"] = auto_choices(cfg, causal_modes)
    if "train" in sections:
        print("train", flush=True)
        results["train"] = gpu_regimes.train(cfg, select_cases(args.cases, gpu_regimes.TRAIN_CASES))
    if "decode" in sections:
        print("decode", flush=True)
        results["decode"] = gpu_regimes.decode(cfg, select_cases(args.cases, gpu_regimes.DECODE_CASES))
        results["decode_bandwidth_gbps"] = gpu_regimes.bandwidth_gbps(cfg.device)
    if "oom" in sections:
        print("out-of-memory sweep", flush=True)
        results["oom"] = oom_sweep(cfg)
    results["seconds"] = time.perf_counter() - started
    print()
    print(report(results))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
