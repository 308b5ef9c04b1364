"""The same work measured on several devices, side by side (Compare and Economics, with devices on
an axis): the ratio of their latencies, the share of each device's OWN roof it reached, and $ per
million tokens at each device's price.

Runs are the same work when they have the same variant, mode and spec (the spec's `device` field
aside); runs of other machines come in with `attn runs import` and keep the device that measured
them. Where a device measured the same work more than once, its newest run stands for it.

- ratio: the latency over the fastest device's (1.00× is the fastest).
- share of its own roof: forward and train, the profile's `roofline_pct`: achieved FLOP/s over
  what that device's calibrated roofline allows at the work's arithmetic intensity, worked out on
  the measuring machine with its own calibration; decode, the bandwidth floor over the latency
  (bytes read at that device's calibrated copy bandwidth). None where the device was not
  calibrated when it measured: the share is never worked out against another device's roof.
- $/Mtok = price per second × latency ÷ tokens × 10⁶, tokens = batch × seq for a forward call
  (a prefill) or a training step, batch × new tokens for a decode step.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from attn.economics import DEFAULT_CPU_PRICE_PER_HOUR, DEFAULT_GPU_PRICE_PER_HOUR, usd_per_mtok
from attn.runs.records import mode_of, spec_short

ROOF_WORDS = {"forward": "of its own calibrated roofline (achieved FLOP/s over the roof at this intensity)",
              "train": "of its own calibrated roofline (achieved FLOP/s over the roof at this intensity)",
              "decode": "of its own bandwidth floor (bytes read at its calibrated copy bandwidth, over the latency)"}
NOT_CALIBRATED = "not calibrated on that device when it measured"


@dataclass(frozen=True)
class DeviceResult:
    """One device's measurement of a piece of work, priced."""

    device: str
    device_kind: str  # cpu | cuda
    run_id: int
    source: str  # where an imported run came from; "" when measured here
    latency_ms: float
    ratio: float  # latency over the fastest device's
    roof_pct: float | None  # share of the device's own roof (see the module's docstring)
    roof_note: str
    achieved_tflops: float | None
    tokens: int
    price_per_hour: float
    usd_per_mtok: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Work:
    """A piece of work (variant, mode, spec) and the newest run of it on each device."""

    variant: str
    mode: str
    spec: dict[str, Any]
    runs: tuple  # Run-like: id, environment, results, created_at, origin

    @property
    def label(self) -> str:
        return f"{self.variant} · {self.mode} · {spec_short(self.spec)} · {len(self.runs)} devices"

    @property
    def devices(self) -> list[str]:
        return [_device(r) for r in self.runs]


def _device(run: Any) -> str:
    return str((run.environment or {}).get("device") or "unknown device")


def work_key(variant: str | None, mode: str, spec: dict[str, Any]) -> str:
    same = {k: v for k, v in spec.items() if k != "device"}
    return json.dumps([variant, mode, same], sort_keys=True, default=str)


def works_on_several_devices(runs: Iterable[Any]) -> list[Work]:
    """The profiles' work that two or more devices measured, the most devices first; each device's
    newest run of it stands for it. `runs` are saved runs (attn.runs.Run); other kinds are skipped."""
    groups: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.kind != "profile" or not isinstance(run.results.get("latency_ms"), (int, float)):
            continue
        by_device = groups.setdefault(work_key(run.variant, mode_of(run.results), run.spec), {})
        held = by_device.get(_device(run))
        if held is None or run.created_at > held.created_at:
            by_device[_device(run)] = run
    works = []
    for by_device in groups.values():
        if len(by_device) >= 2:
            first = next(iter(by_device.values()))
            works.append(Work(first.variant, mode_of(first.results), first.spec,
                              tuple(sorted(by_device.values(), key=lambda r: r.results["latency_ms"]))))
    return sorted(works, key=lambda w: (-len(w.runs), w.variant, w.mode))


def tokens_of(spec: dict[str, Any], mode: str) -> int:
    """Tokens one call serves: batch × seq (a prefill or a training step), batch × new tokens
    (a decode step, whose spec's seq is its new tokens)."""
    return max(1, int(spec.get("batch") or 1) * int(spec.get("seq") or 1))


def roof_share(results: dict[str, Any], mode: str) -> float | None:
    """The share of the measuring device's own roof, in percent (see the module's docstring)."""
    if mode == "decode":
        floor, latency = results.get("floor_ms"), results.get("latency_ms")
        return 100.0 * floor / latency if floor and latency else None
    pct = results.get("roofline_pct")
    return float(pct) if isinstance(pct, (int, float)) else None


def default_price(device_kind: str) -> float:
    return DEFAULT_GPU_PRICE_PER_HOUR if device_kind == "cuda" else DEFAULT_CPU_PRICE_PER_HOUR


def side_by_side(work: Work, prices: dict[str, float] | None = None) -> list[DeviceResult]:
    """Each device's result for the work, the fastest first. `prices`: $ per hour by device name;
    a device without one pays its kind's default (economics: an H100's list price for a GPU, a
    small VM's for a CPU)."""
    prices = prices or {}
    fastest = float(work.runs[0].results["latency_ms"])
    rows = []
    for run in work.runs:
        env = run.environment or {}
        kind = str(env.get("device_kind") or "cpu")
        latency = float(run.results["latency_ms"])
        tokens = tokens_of(run.spec, work.mode)
        price = float(prices.get(_device(run), default_price(kind)))
        share = roof_share(run.results, work.mode)
        origin = getattr(run, "origin", None) or {}
        rows.append(DeviceResult(
            device=_device(run), device_kind=kind, run_id=int(run.id), source=str(origin.get("source") or ""),
            latency_ms=latency, ratio=latency / fastest if fastest else float("nan"), roof_pct=share,
            roof_note=ROOF_WORDS.get(work.mode, ROOF_WORDS["forward"]) if share is not None else NOT_CALIBRATED,
            achieved_tflops=run.results.get("achieved_tflops"), tokens=tokens, price_per_hour=price,
            usd_per_mtok=usd_per_mtok(latency, tokens, price)))
    return rows
