"""Sweeps: several variants over sequence lengths, with the curves' exponents, the crossovers
between variants, and the memory wall (the longest sequence that fits).

A variant's sweep stops at its first out-of-memory; the other variants go on.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from attn import variants
from attn.cost import attention_cost, io_bytes
from attn.inputs import resolve_device
from attn.spec import AttentionSpec

AXES = ("seq", "batch", "heads", "head_dim")
METRICS = ("latency_ms", "peak_bytes", "flops")


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
    """Where curve a and curve b cross, interpolated linearly in log-log between samples."""
    found = []
    for i in range(len(xs) - 1):
        d0 = math.log(ya[i]) - math.log(yb[i])
        d1 = math.log(ya[i + 1]) - math.log(yb[i + 1])
        if d0 == 0 or d0 * d1 >= 0:
            continue
        t = d0 / (d0 - d1)
        x = math.exp(math.log(xs[i]) + t * (math.log(xs[i + 1]) - math.log(xs[i])))
        found.append(Crossover(metric, a, b, x, cheaper_after=a if d1 < 0 else b))
    return found


def projected_wall(fixed_bytes: Callable[[int], int], workspace: Fit | None, budget_bytes: int,
                   variant: str, largest_seen: int) -> MemoryWall:
    """The largest x whose projected footprint fits the budget: the inputs, known exactly, plus
    the call's own peak as fitted on the measured points (held at its largest measured value
    when it does not grow)."""
    def footprint(x: int) -> float:
        extra = 0.0
        if workspace is not None:
            extra = workspace.at(max(x, largest_seen)) if workspace.exponent > 0 else workspace.at(largest_seen)
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
                      f"projected: inputs + call peak ~ {growth}, against {budget_bytes / 2**30:.1f} GiB")


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
    return base.with_(**{axis: x})


ProfileFn = Callable[..., object]


def measure_point(spec: AttentionSpec, variant: str, x: int, device: str, budget_s: float,
                  profile_fn: ProfileFn | None = None) -> Point:
    """Profile one point; out-of-memory and unsupported specs become marked points."""
    from attn import measure

    profile_fn = profile_fn or measure.profile
    try:
        reasons = variants.get(variant).unsupported(spec, device)
        if reasons:
            return Point(variant, x, "unsupported", "; ".join(reasons), spec=spec.to_dict())
        prof = profile_fn(spec, variant, device=device, budget_s=budget_s)
    except measure.DoesNotFit as err:
        return Point(variant, x, "oom", str(err), spec=spec.to_dict())
    inputs, _ = io_bytes(spec)
    return Point(variant, x, "ok", latency_ms=prof.latency_ms, p10_ms=prof.p10_ms,
                 p90_ms=prof.p90_ms, peak_bytes=prof.peak_bytes,
                 footprint_bytes=inputs + prof.peak_bytes, flops=prof.flops,
                 achieved_tflops=prof.achieved_tflops, kernel_error=prof.kernel_error,
                 approx_error=prof.approx_error, backend=prof.backend, energy_j=prof.energy_j,
                 spec=spec.to_dict())


def run_sweep(base: AttentionSpec, names: list[str], xs: list[int], axis: str = "seq",
              device: str | None = None, budget_s: float = 0.5,
              on_point: Callable[[Point], None] | None = None,
              cancelled: Callable[[], bool] | None = None,
              profile_fn: ProfileFn | None = None,
              memory_budget_bytes: int | None = None) -> SweepResult:
    """Profile every variant at every x (ascending). Each point is passed to `on_point` as soon
    as it is measured, so a page can draw the curves while the sweep runs."""
    from attn.measure import free_bytes

    for n in names:
        variants.get(n)  # unknown names fail before any work
    device = resolve_device(device or base.device)
    xs = sorted(set(xs))
    specs = {x: spec_at(base, axis, x) for x in xs}  # bad sizes fail before any work
    points: list[Point] = []
    for n in names:
        for x in xs:
            if cancelled is not None and cancelled():
                break
            point = measure_point(specs[x], n, x, device, budget_s, profile_fn)
            points.append(point)
            if on_point is not None:
                on_point(point)
            if point.status == "oom":
                break  # larger x only need more memory
    fits, found = analyse(points, names)
    budget = memory_budget_bytes or free_bytes(device)
    walls = [memory_wall(base, n, axis, fits.get(n, {}), points, budget, device) for n in names]
    return SweepResult(axis, xs, names, device, points, fits, found, walls, base.to_dict())


def memory_wall(base: AttentionSpec, variant: str, axis: str, fits: dict[str, Fit],
                points: list[Point], budget: int, device: str) -> MemoryWall:
    if device.startswith("cuda"):
        return bisect_wall(base, variant, axis, points, budget, device)
    mine = [p for p in points if p.variant == variant and p.status == "ok"]
    if len(mine) < 2:
        return MemoryWall(variant, None, budget, True, "too few measured points to project")
    workspace = fit_power_law([p.x for p in mine], [p.peak_bytes for p in mine])
    return projected_wall(lambda x: sum(io_bytes(spec_at(base, axis, x))), workspace, budget,
                          variant, max(p.x for p in mine))


def bisect_wall(base: AttentionSpec, variant: str, axis: str, points: list[Point], budget: int,
                device: str, max_steps: int = 12) -> MemoryWall:
    """On a GPU: bisect between the largest x that ran and the first that did not, allocating
    for real. Each try frees its memory before the next."""
    import torch

    from attn.inputs import random_qkv

    mine = [p for p in points if p.variant == variant]
    ok = [p.x for p in mine if p.status == "ok"]
    lo = max(ok) if ok else 0
    failed = [p.x for p in mine if p.status == "oom"]
    hi = min(failed) if failed else max(lo * 64, 1)

    def fits_for_real(x: int) -> bool:
        spec = spec_at(base, axis, x).with_(device=device)
        try:
            q, k, v = random_qkv(spec)
            with torch.inference_mode():
                variants.get(variant).run(q, k, v, spec)
            torch.cuda.synchronize()
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            q = k = v = None
            torch.cuda.empty_cache()

    steps = 0
    while hi - lo > max(1, lo // 64) and steps < max_steps:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits_for_real(mid) else (lo, mid)
        steps += 1
    return MemoryWall(variant, lo or None, budget, False, f"bisected with real allocations ({steps} tries)")


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


def analytic_curve(base: AttentionSpec, variant: str, xs: list[int], axis: str = "seq") -> list[dict]:
    """The cost model along an axis, without running anything (for the small curves)."""
    out = []
    for x in xs:
        spec = spec_at(base, axis, x)
        c = attention_cost(spec, variant)
        out.append({"x": x, "flops": c.flops, "peak_bytes": c.peak_bytes, "pairs": c.pairs})
    return out
