"""Dollars and joules per million tokens in the other two regimes, from saved runs: a decode step
(per generated token, beside its bandwidth floor) and a training step of one attention layer
(per training token, forward + backward).

Pure arithmetic on measured numbers, like attn.economics (whose $/Mtok and J/Mtok it applies);
nothing here runs a kernel, and nothing is priced that was not measured.

Decode: one step of `new_tokens` queries for each of `batch` sequences generates batch *
new_tokens tokens, so
    $/Mtok = price per second * step time / (batch * new_tokens) * 1e6
and the floor is the same with the step's `floor_ms` (bytes read / the calibrated copy bandwidth
of the device it ran on): what the step would cost if it only read its cache at full bandwidth.
Training: one step of forward and backward over batch * seq tokens, so
    $/Mtok = price per second * (forward_ms + backward_ms) / (batch * seq) * 1e6
Both are for the attention core of one layer alone (no projections, MLP or weights' read).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from attn.economics import ENERGY_ON_CPU, joules_per_mtok, shape_of, usd_per_mtok

ENERGY_NOT_READ = ("no energy reading was saved with this run (attn reads the GPU's energy counter in "
                   "forward profiles; the train and decode profilers do not)")
FLOOR_MISSING = "no floor was saved with this run (the device had no calibrated copy bandwidth)"


@dataclass(frozen=True)
class DecodeCost:
    """One decode step's price per million generated tokens, measured and at its floor."""

    variant: str
    shape: str  # shape_of(spec): batch, heads, head_dim, dtype
    context: int  # cached keys
    new_tokens: int
    batch: int
    tokens: int  # generated per step: batch * new_tokens
    step_ms: float
    per_token_ms: float  # the step over new_tokens: what one sequence waits per token
    price_per_hour: float
    usd_per_mtok: float
    floor_ms: float | None
    floor_usd_per_mtok: float | None  # the same price at the bandwidth floor
    floor_note: str  # empty when there is a floor
    joules_per_mtok: float | None
    energy_note: str  # empty when measured; otherwise why there is no J/Mtok
    device: str
    device_kind: str
    run_id: int | None


@dataclass(frozen=True)
class TrainCost:
    """One training step's price per million training tokens, for one attention layer."""

    variant: str
    shape: str
    seq: int
    batch: int
    tokens: int  # per step: batch * seq
    forward_ms: float
    backward_ms: float
    step_ms: float  # forward_ms + backward_ms
    price_per_hour: float
    usd_per_mtok: float
    joules_per_mtok: float | None
    energy_note: str
    device: str
    device_kind: str
    run_id: int | None


def _points(runs: Iterable[Any], mode: str) -> list[tuple[dict[str, Any], dict[str, Any], Any]]:
    """(numbers, spec, run) of every saved profile in `mode` and every point of a sweep in it."""
    found = []
    for run in runs:
        if run.mode != mode:
            continue
        if run.kind == "profile":
            found.append((run.results, run.results.get("spec") or run.spec, run))
        elif run.kind == "sweep":
            found += [(p, p.get("spec") or {}, run) for p in run.results.get("points") or []
                      if p.get("status", "ok") == "ok"]
    return found


def _price(run: Any, gpu_price_per_hour: float, cpu_price_per_hour: float) -> tuple[float, str, str]:
    env = run.environment or {}
    kind = str(env.get("device_kind") or "")
    return (gpu_price_per_hour if kind == "cuda" else cpu_price_per_hour), str(env.get("device") or ""), kind


def _energy(energy_j: float | None, tokens: int, device_kind: str) -> tuple[float | None, str]:
    joules = joules_per_mtok(energy_j, tokens)
    if joules is not None:
        return joules, ""
    return None, ENERGY_ON_CPU if device_kind != "cuda" else ENERGY_NOT_READ


def _newest(rows: list, key) -> list:
    """One row per key: the newest run's (ids only grow)."""
    best: dict[tuple, Any] = {}
    for row in rows:
        k = key(row)
        if k not in best or (row.run_id or 0) > (best[k].run_id or 0):
            best[k] = row
    return list(best.values())


def decode_costs(runs: Iterable[Any], gpu_price_per_hour: float, cpu_price_per_hour: float) -> list[DecodeCost]:
    """$/Mtok (and J/Mtok where energy was measured) of every saved decode step, newest per
    (device, shape, variant, context, new tokens), sorted by variant and context. A GPU run pays
    the GPU's price, a CPU run the CPU's."""
    rows = []
    for numbers, spec, run in _points(runs, "decode"):
        step = numbers.get("latency_ms")
        context, new = spec.get("kv_seq"), spec.get("seq")
        if step is None or not context or not new:
            continue
        batch = int(spec.get("batch") or 1)
        tokens = batch * int(new)
        price, device, kind = _price(run, gpu_price_per_hour, cpu_price_per_hour)
        floor = numbers.get("floor_ms")
        joules, note = _energy(numbers.get("energy_j"), tokens, kind)
        rows.append(DecodeCost(
            variant=str(numbers.get("variant") or run.variant), shape=shape_of(spec), context=int(context),
            new_tokens=int(new), batch=batch, tokens=tokens, step_ms=float(step),
            per_token_ms=float(numbers.get("per_token_ms") or step / int(new)), price_per_hour=price,
            usd_per_mtok=usd_per_mtok(step, tokens, price), floor_ms=floor,
            floor_usd_per_mtok=None if floor is None else usd_per_mtok(floor, tokens, price),
            floor_note="" if floor is not None else FLOOR_MISSING, joules_per_mtok=joules, energy_note=note,
            device=device, device_kind=kind, run_id=run.id))
    newest = _newest(rows, lambda r: (r.device, r.shape, r.variant, r.context, r.new_tokens))
    return sorted(newest, key=lambda r: (r.variant, r.context, r.new_tokens))


def train_costs(runs: Iterable[Any], gpu_price_per_hour: float, cpu_price_per_hour: float) -> list[TrainCost]:
    """$/Mtok (and J/Mtok where energy was measured) of every saved training step, newest per
    (device, shape, variant, seq), sorted by variant and length. A run that did not time the
    forward and the backward apart is left out."""
    rows = []
    for numbers, spec, run in _points(runs, "train"):
        fwd, bwd, seq = numbers.get("forward_ms"), numbers.get("backward_ms"), spec.get("seq")
        if fwd is None or bwd is None or not seq:
            continue
        batch = int(spec.get("batch") or 1)
        tokens = batch * int(seq)
        price, device, kind = _price(run, gpu_price_per_hour, cpu_price_per_hour)
        step = float(fwd) + float(bwd)
        joules, note = _energy(numbers.get("energy_j"), tokens, kind)
        rows.append(TrainCost(
            variant=str(numbers.get("variant") or run.variant), shape=shape_of(spec), seq=int(seq), batch=batch,
            tokens=tokens, forward_ms=float(fwd), backward_ms=float(bwd), step_ms=step, price_per_hour=price,
            usd_per_mtok=usd_per_mtok(step, tokens, price), joules_per_mtok=joules, energy_note=note,
            device=device, device_kind=kind, run_id=run.id))
    newest = _newest(rows, lambda r: (r.device, r.shape, r.variant, r.seq))
    return sorted(newest, key=lambda r: (r.variant, r.seq))
