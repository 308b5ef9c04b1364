"""A variant's memory wall in a sweep: the longest value of the axis that fits the memory budget,
projected from the fitted memory curve, or on a CUDA device bisected with real allocations."""
from __future__ import annotations

from typing import Callable

import torch

from attn import variants
from attn.cost import io_bytes
from attn.device import is_out_of_memory
from attn.inputs import random_qkv
from attn.readable import nbytes
from attn.spec import AttentionSpec
from attn.sweep_plan import spec_at
from attn.sweep_result import Fit, MemoryWall, Point, fit_power_law


def projected_wall(fixed_bytes: Callable[[int], int], workspace: Fit | None, budget_bytes: int,
                   variant: str, largest_seen: int) -> MemoryWall:
    """The largest x whose projected footprint fits the budget: the inputs, known exactly, plus
    the call's own peak as fitted on the measured points (held at its largest measured value
    when it does not grow)."""
    def footprint(x: int) -> float:
        extra = 0.0
        if workspace is not None:
            # a growing peak follows its fit (below the largest measured x too, so a budget
            # smaller than a measured point's need puts the wall below that point); a flat or
            # shrinking one is held at its largest measured value, never extrapolated down
            extra = workspace.at(x) if workspace.exponent > 0 else workspace.at(largest_seen)
        return fixed_bytes(x) + extra

    if footprint(1) > budget_bytes:
        return MemoryWall(variant, None, budget_bytes, True, "not even the smallest size fits")
    lo, hi = 1, 2
    while footprint(hi) <= budget_bytes and hi < 2**40:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if footprint(mid) <= budget_bytes else (lo, mid)
    growth = f"x^{workspace.exponent:.2f}" if workspace else "nothing measured"
    return MemoryWall(variant, lo, budget_bytes, True,
                      f"projected: inputs + call peak ~ {growth}, against {nbytes(budget_bytes)}")


def memory_wall(base: AttentionSpec, variant: str, axis: str, fits: dict[str, Fit],
                points: list[Point], budget: int, device: str) -> MemoryWall:
    if device.startswith("cuda"):
        return bisect_wall(base, variant, axis, points, budget, device)
    mine = [p for p in points if p.variant == variant and p.status == "ok"]
    if len(mine) < 2:
        return MemoryWall(variant, None, budget, True, "too few measured points to project")
    workspace = fit_power_law([p.x for p in mine], [p.peak_bytes for p in mine])
    # the call's measured peak already holds its output; the inputs are what it adds to that
    return projected_wall(lambda x: io_bytes(spec_at(base, axis, x))[0], workspace, budget,
                          variant, max(p.x for p in mine))


def largest_that_fits(fits: Callable[[int], bool], lo: int, hi: int, hi_fails: bool = True,
                      max_tries: int = 16, tolerance: float = 1 / 64) -> tuple[int | None, int, bool]:
    """The largest x for which `fits(x)` holds, by bisection between `lo` (known to fit; 0 when
    nothing is known to) and `hi` (known not to fit when `hi_fails`; otherwise tried first and
    doubled while it fits). Stops when the bracket is within `tolerance` of `lo` or after
    `max_tries` calls of `fits`.

    Returns (x, tries, bounded): x is None when nothing fits; bounded is False when the tries
    ran out before any failure was seen, so x is only a lower bound."""
    tries = 0
    if not hi_fails:
        while tries < max_tries:
            tries += 1
            if not fits(hi):
                break
            lo, hi = hi, hi * 2
        else:
            return lo or None, tries, False
    while hi - lo > max(1, int(lo * tolerance)) and tries < max_tries:
        mid = (lo + hi) // 2
        tries += 1
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo or None, tries, True


def bisect_wall(base: AttentionSpec, variant: str, axis: str, points: list[Point], budget: int,
                device: str, max_steps: int = 12) -> MemoryWall:
    """On a GPU: bisect between the largest x that ran and the first that did not, allocating
    for real. Each try frees its memory before the next. Only the CUDA calls are here; the
    search is `largest_that_fits`."""
    mine = [p for p in points if p.variant == variant]
    ok = [p.x for p in mine if p.status == "ok"]
    failed = [p.x for p in mine if p.status == "oom"]
    lo = max(ok) if ok else 0
    hi = min(failed) if failed else max(2 * lo, 1)
    other_errors: list[str] = []

    def fits_for_real(x: int) -> bool:
        q = k = v = None
        try:
            spec = spec_at(base, axis, x).with_(device=device)
            q, k, v = random_qkv(spec)
            with torch.inference_mode():
                variants.get(variant).run(q, k, v, spec)
            torch.cuda.synchronize()
            return True
        except RuntimeError as err:  # out of memory, or a kernel that cannot take this size
            if not is_out_of_memory(err):
                other_errors.append(f"{x}: {(str(err).splitlines() or ['error'])[0]}")
            return False
        except ValueError:  # a size the spec rejects
            return False
        finally:
            q = k = v = None
            torch.cuda.empty_cache()

    x, tries, bounded = largest_that_fits(fits_for_real, lo, hi, hi_fails=bool(failed),
                                          max_tries=max_steps)
    note = f"bisected with real allocations ({tries} tries)"
    if not bounded:
        note += f"; every try fitted, so the wall is above {x}"
    if other_errors:
        note += "; failures other than out-of-memory count as not fitting: " + "; ".join(other_errors[:2])
    return MemoryWall(variant, x, budget, False, note)
