"""What a sweep returns: its points, the power laws fitted to them, where two variants' curves
cross, and each variant's memory wall; the analysis is arithmetic on measured points, and the
summary a person reads on the command line."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

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
