"""Sweeps: several variants over sequence lengths, with the curves' exponents, the crossovers
between variants, and the memory wall (the longest sequence that fits).

A variant's sweep stops at its first out-of-memory; the other variants go on.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import torch

from attn import measure, variants
from attn.cost import attention_cost, io_bytes
from attn.device import free_bytes, is_out_of_memory, resolve_device
from attn.inputs import random_qkv
from attn.readable import nbytes
from attn.regimes import check_mode, is_decode_spec
from attn.spec import AttentionSpec
from attn.timing import check_budget

AXES = ("seq", "batch", "heads", "head_dim", "context")  # context: the cached keys of a decode step
METRICS = ("latency_ms", "peak_bytes", "flops", "saved_bytes", "bytes_read")  # fitted where measured


@dataclass
class Point:
    variant: str
    x: int  # the swept value (sequence length by default)
    status: str  # ok | oom | unsupported | error
    message: str = ""
    latency_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    peak_bytes: int | None = None
    footprint_bytes: int | None = None  # inputs + peak of the call: what must fit
    flops: int | None = None
    achieved_tflops: float | None = None
    kernel_error: float | None = None
    approx_error: float | None = None
    backend: str = ""
    energy_j: float | None = None
    spec: dict = field(default_factory=dict)
    mode: str = "forward"
    # train
    forward_ms: float | None = None
    backward_ms: float | None = None
    saved_bytes: int | None = None
    grad_error: float | None = None
    # decode
    bytes_read: int | None = None
    floor_ms: float | None = None
    achieved_gbps: float | None = None
    per_token_ms: float | None = None
    node: str = ""  # the host that measured it, on a Ray cluster (attn.cluster); empty on this machine


@dataclass(frozen=True)
class Fit:
    """y = coefficient * x ** exponent, fitted by least squares in log-log."""
    exponent: float
    coefficient: float
    points: int

    def at(self, x: float) -> float:
        return self.coefficient * x ** self.exponent


@dataclass(frozen=True)
class Crossover:
    metric: str
    a: str
    b: str
    x: float  # where a stops being cheaper than b (or the other way round)
    cheaper_after: str


@dataclass(frozen=True)
class MemoryWall:
    variant: str
    x: int | None  # longest value that fits; None when not even the smallest fits
    budget_bytes: int
    projected: bool  # True: from the fitted memory curve; False: found with real allocations
    note: str


@dataclass
class SweepResult:
    axis: str
    xs: list[int]
    variants: list[str]
    device: str
    points: list[Point]
    fits: dict[str, dict[str, Fit]]
    crossovers: list[Crossover]
    walls: list[MemoryWall]
    spec: dict
    mode: str = "forward"

    def to_dict(self) -> dict:
        return asdict(self)


# -- pure analysis on measured points --------------------------------------------------------
def fit_power_law(xs: Iterable[float], ys: Iterable[float]) -> Fit | None:
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pairs) < 2:
        return None
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    if sxx == 0:
        return None
    slope = sum((p[0] - mx) * (p[1] - my) for p in pairs) / sxx
    return Fit(slope, math.exp(my - slope * mx), len(pairs))


def crossovers(xs: list[float], ya: list[float], yb: list[float], metric: str, a: str,
               b: str) -> list[Crossover]:
    """Where curve a and curve b cross, interpolated linearly in log-log between samples.

    Curves that meet exactly at a sample and go on to swap places cross there; curves that
    touch and part again on the same sides do not cross."""
    d = [math.log(p) - math.log(q) for p, q in zip(ya, yb)]
    found = []
    last = None  # index of the last sample where the curves differed
    for i, di in enumerate(d):
        if di == 0:
            continue
        if last is not None and d[last] * di < 0:
            if i == last + 1:
                t = d[last] / (d[last] - di)
                x = math.exp(math.log(xs[last]) + t * (math.log(xs[i]) - math.log(xs[last])))
            else:  # equal at the samples between: the first of them is where they cross
                x = float(xs[last + 1])
            found.append(Crossover(metric, a, b, x, cheaper_after=a if di < 0 else b))
        last = i
    return found


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


def analyse(points: list[Point], names: list[str]) -> tuple[dict[str, dict[str, Fit]], list[Crossover]]:
    ok = {n: sorted((p for p in points if p.variant == n and p.status == "ok"), key=lambda p: p.x)
          for n in names}
    fits = {}
    for n, pts in ok.items():
        fits[n] = {m: f for m in METRICS
                   if (f := fit_power_law([p.x for p in pts], [getattr(p, m) for p in pts]))}
    found = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted({p.x for p in ok[a]} & {p.x for p in ok[b]})
            if len(common) < 2:
                continue
            for metric in ("latency_ms", "peak_bytes"):
                ya = {p.x: getattr(p, metric) for p in ok[a]}
                yb = {p.x: getattr(p, metric) for p in ok[b]}
                if all(ya[x] and yb[x] for x in common):
                    found += crossovers(common, [ya[x] for x in common], [yb[x] for x in common],
                                        metric, a, b)
    return fits, found


# -- running ---------------------------------------------------------------------------------
def spec_at(base: AttentionSpec, axis: str, x: int) -> AttentionSpec:
    if axis not in AXES:
        raise ValueError(f"unknown sweep axis {axis!r}: choose one of {', '.join(AXES)}")
    if axis == "seq":
        kv = x if base.kv_seq == base.seq else base.kv_seq
        return base.with_(seq=x, kv_seq=kv)
    if axis == "heads":
        return base.with_(heads=x, kv_heads=max(1, x // base.groups), d_model=None)
    if axis == "context":
        return base.with_(kv_seq=x)
    return base.with_(**{axis: x})


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


def plan_sweep(base: AttentionSpec, names: list[str], xs: list[int], axis: str, budget_s: float,
               mode: str) -> tuple[list[int], dict[int, AttentionSpec]]:
    """The sorted values and the spec at each, after every check that can fail before any work
    (the local loop and attn.cluster's Ray tasks share it)."""
    check_budget(budget_s)
    for n in names:
        variants.get(n)  # unknown names fail before any work
    xs = sorted(set(xs))
    check_mode(mode)
    specs = {x: spec_at(base, axis, x) for x in xs}  # bad sizes fail before any work
    if mode == "decode":
        for spec in specs.values():
            if not is_decode_spec(spec):
                raise ValueError(f"a decode step needs at least as many cached keys as new tokens: "
                                 f"context {spec.kv_seq} < new_tokens {spec.seq}")
    elif axis == "context":
        raise ValueError("the context axis is for decode sweeps: add --mode decode")
    return xs, specs


def sweep_result(base: AttentionSpec, names: list[str], xs: list[int], axis: str, device: str,
                 points: list[Point], budget: int, wall_device: str, mode: str) -> SweepResult:
    """Fits, crossovers and memory walls of the measured points; `wall_device` "cpu" projects the
    wall from the fits, a CUDA device bisects it with real allocations here."""
    fits, found = analyse(points, names)
    walls = [memory_wall(base, n, axis, fits.get(n, {}), points, budget, wall_device) for n in names]
    return SweepResult(axis, xs, names, device, points, fits, found, walls, base.to_dict(), mode)


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


def human_summary(d: dict) -> str:
    lines = [f"sweep over {d['axis']} on {d['device']}"]
    for p in d["points"]:
        if p["status"] == "ok":
            lines.append(f"  {p['variant']:15} {p['x']:>7}  {p['latency_ms']:10.3f} ms  "
                         f"{p['peak_bytes'] / 2**20:9.1f} MiB  {p['flops'] / 1e9:10.3f} GFLOP")
        else:
            lines.append(f"  {p['variant']:15} {p['x']:>7}  {p['status']}: {p['message']}")
    for n, fs in d["fits"].items():
        lines.append(f"  {n}: " + ", ".join(f"{m} ~ x^{f['exponent']:.2f}" for m, f in fs.items()))
    for c in d["crossovers"]:
        lines.append(f"  {c['metric']}: {c['a']} and {c['b']} cross at {c['x']:.0f}; "
                     f"{c['cheaper_after']} is cheaper beyond")
    for w in d["walls"]:
        lines.append(f"  memory wall {w['variant']}: {w['x']} ({w['note']})")
    return "\n".join(lines)


def analytic_curve(base: AttentionSpec, variant: str, xs: list[int], axis: str = "seq",
                   mode: str = "forward") -> list[dict]:
    """The cost model along an axis in a regime, without running anything (the small curves)."""
    out = []
    for x in xs:
        c = attention_cost(spec_at(base, axis, x), variant, mode)
        out.append({"x": x, "flops": c.flops, "peak_bytes": c.peak_bytes, "pairs": c.pairs,
                    "saved_bytes": c.saved_bytes, "bytes_read": c.bytes_read})
    return out
