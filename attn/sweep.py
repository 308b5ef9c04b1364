"""Sweeps: several variants over sequence lengths, with the curves' exponents, the crossovers
between variants, and the memory wall (the longest sequence that fits).

A variant's sweep stops at its first out-of-memory; the other variants go on.

Here: measuring a point and running the loop. What the loop runs is planned in `sweep_plan`, its
result and the analysis of it are `sweep_result`, the memory walls `memory_wall`; their names
are all importable from here, as before.
"""
from __future__ import annotations

from typing import Callable

from attn import measure, variants
from attn.cost import attention_cost, io_bytes
from attn.device import free_bytes, resolve_device
from attn.memory_wall import bisect_wall, largest_that_fits, memory_wall, projected_wall
from attn.readable import nbytes
from attn.spec import AttentionSpec
from attn.sweep_plan import AXES, analytic_curve, plan_sweep, spec_at
from attn.sweep_result import (METRICS, Crossover, Fit, MemoryWall, Point, SweepResult, analyse, crossovers,
                               fit_power_law, human_summary)

__all__ = ["AXES", "METRICS", "Crossover", "Fit", "MemoryWall", "Point", "ProfileFn", "SweepResult", "analyse",
           "analytic_curve", "bisect_wall", "crossovers", "fit_power_law", "human_summary", "largest_that_fits",
           "measure_point", "memory_wall", "plan_sweep", "projected_wall", "run_sweep", "spec_at", "sweep_result"]


ProfileFn = Callable[..., object]


def measure_point(spec: AttentionSpec, variant: str, x: int, device: str, budget_s: float,
                  profile_fn: ProfileFn | None = None,
                  memory_budget_bytes: int | None = None, mode: str = "forward") -> Point:
    """Profile one point; out-of-memory, unsupported specs and failed calls become marked
    points. With a memory budget, a point whose estimated peak exceeds it is out of memory
    without being allocated."""
    profile_fn = profile_fn or measure.profile
    var = variants.get(variant)
    try:
        reasons = var.unsupported(spec, device) + ([var.cannot[mode]] if mode in var.cannot else [])
        if reasons:
            return Point(variant, x, "unsupported", "; ".join(reasons), spec=spec.to_dict(), mode=mode)
        need = attention_cost(spec, variant, mode).peak_bytes
        if memory_budget_bytes is not None and need > memory_budget_bytes:
            raise measure.DoesNotFit(
                f"does not fit: {variant} at {x} needs ~{nbytes(need)}, over the sweep's "
                f"budget of {nbytes(memory_budget_bytes)}")
        regime = {} if mode == "forward" else {"mode": mode}  # a forward-only profile_fn still serves
        prof = profile_fn(spec, variant, device=device, budget_s=budget_s, **regime)
    except measure.DoesNotFit as err:
        return Point(variant, x, "oom", str(err), spec=spec.to_dict(), mode=mode)
    except RuntimeError as err:  # a kernel that fails at this size; the next size may run
        message = (str(err).splitlines() or [type(err).__name__])[0]
        return Point(variant, x, "error", message, spec=spec.to_dict(), mode=mode)
    inputs, _ = io_bytes(spec)
    return Point(variant, x, "ok", latency_ms=prof.latency_ms, p10_ms=prof.p10_ms,
                 p90_ms=prof.p90_ms, peak_bytes=prof.peak_bytes,
                 footprint_bytes=inputs + prof.peak_bytes, flops=prof.flops,
                 achieved_tflops=prof.achieved_tflops, kernel_error=prof.kernel_error,
                 approx_error=prof.approx_error, backend=prof.backend, energy_j=prof.energy_j,
                 spec=spec.to_dict(), mode=mode,
                 forward_ms=getattr(prof, "forward_ms", None), backward_ms=getattr(prof, "backward_ms", None),
                 saved_bytes=getattr(prof, "saved_bytes", None), grad_error=getattr(prof, "grad_error", None),
                 bytes_read=getattr(prof, "bytes_read", None), floor_ms=getattr(prof, "floor_ms", None),
                 achieved_gbps=getattr(prof, "achieved_gbps", None),
                 per_token_ms=getattr(prof, "per_token_ms", None))


def run_sweep(base: AttentionSpec, names: list[str], xs: list[int], axis: str = "seq",
              device: str | None = None, budget_s: float = 0.5,
              on_point: Callable[[Point], None] | None = None,
              cancelled: Callable[[], bool] | None = None,
              profile_fn: ProfileFn | None = None,
              memory_budget_bytes: int | None = None, mode: str = "forward") -> SweepResult:
    """Profile every variant at every x (ascending). Each point is passed to `on_point` as soon
    as it is measured, so a page can draw the curves while the sweep runs.

    `memory_budget_bytes` (default: what `device.free_bytes` allows, half the available RAM
    on the CPU) bounds both the points tried and the projected memory wall."""
    xs, specs = plan_sweep(base, names, xs, axis, budget_s, mode)
    device = resolve_device(device or base.device)
    points: list[Point] = []
    stopped = False
    for n in names:
        for x in xs:
            stopped = stopped or (cancelled is not None and cancelled())
            if stopped:
                break
            point = measure_point(specs[x], n, x, device, budget_s, profile_fn, memory_budget_bytes,
                                  mode)
            points.append(point)
            if on_point is not None:
                on_point(point)
            if point.status == "oom":
                break  # larger x only need more memory
    budget = memory_budget_bytes or free_bytes(device)
    # a cancelled sweep is not followed by a search that allocates for real
    return sweep_result(base, names, xs, axis, device, points, budget, "cpu" if stopped else device, mode)


def sweep_result(base: AttentionSpec, names: list[str], xs: list[int], axis: str, device: str,
                 points: list[Point], budget: int, wall_device: str, mode: str) -> SweepResult:
    """Fits, crossovers and memory walls of the measured points; `wall_device` "cpu" projects the
    wall from the fits, a CUDA device bisects it with real allocations here."""
    fits, found = analyse(points, names)
    walls = [memory_wall(base, n, axis, fits.get(n, {}), points, budget, wall_device) for n in names]
    return SweepResult(axis, xs, names, device, points, fits, found, walls, base.to_dict(), mode)
