"""The price of attention: dollars and joules per million tokens, the longest context a memory
budget holds, the quality/cost frontier, and what sharing keys and values (GQA/MQA) saves.

Pure arithmetic on measured numbers (saved profiles and sweeps); nothing here runs a kernel.

Token costs are for the attention core alone, as measured: one call processes batch * seq query
tokens (a prefill), so
    $/Mtok = price per second * latency in seconds / (batch * seq) * 1e6
    J/Mtok = energy per call in joules / (batch * seq) * 1e6
Energy comes from an NVIDIA GPU's energy counter; a run without a reading has no J/Mtok, and
`TokenCost.energy_note` says why. These prices are of the forward regime (a prefill); decode and
training steps are priced apart (attn.regime_costs), and `measurements` leaves their runs out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from attn.cost import io_bytes, kv_cache_bytes_per_token
from attn.spec import AttentionSpec, divisors
from attn.sweep import fit_power_law, projected_wall, spec_at

DEFAULT_GPU_PRICE_PER_HOUR = 2.50
GPU_PRICE_NOTE = ("Default: a typical 2025–2026 on-demand cloud list price for one H100 GPU. "
                  "Prices differ by provider, region and commitment: enter your own.")
DEFAULT_CPU_PRICE_PER_HOUR = 0.20
CPU_PRICE_NOTE = ("Default: a rough on-demand price of a small cloud VM with a few vCPUs. "
                  "Enter your own.")
DEFAULT_BANDWIDTH_GBPS = 3350.0
BANDWIDTH_NOTE = ("Default: the H100 SXM datasheet's HBM3 bandwidth (3.35 TB/s); a calibrated "
                  "device's measured copy bandwidth replaces it.")
DECODE_MODEL_NOTE = (
    "Model: decoding is memory-bound. Each step reads every sequence's whole KV cache once "
    "(batch × context × layers × bytes per token) at the memory bandwidth, and yields one token "
    "per sequence, so $/Mtok = price per second × read time ÷ batch × 10⁶ (the batch cancels: "
    "each token pays for reading its own sequence's cache). It leaves out the weights' read "
    "(shared by the batch), the compute and the cache writes, so it is a floor, and the saving "
    "between rows is what sharing keys and values changes.")
ENERGY_ON_CPU = "CPU run: energy is read from an NVIDIA GPU's counter, which a CPU run lacks"
ENERGY_MISSING = "no energy reading was saved with this run (the GPU's counter was not readable)"
SAVED_WALL_TOLERANCE = 0.05  # a saved wall answers for a budget within 5% of its own


# -- measurements from saved runs --------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """One measured point: a profile run, or one point of a sweep."""

    variant: str
    seq: int
    batch: int
    status: str  # ok | oom | unsupported | error
    latency_ms: float | None
    energy_j: float | None
    peak_bytes: int | None
    footprint_bytes: int | None  # inputs + the call's peak: what must fit
    approx_error: float | None
    device: str
    device_kind: str  # cpu | cuda
    shape: str  # what stays fixed along a curve: "B1 H8/2 D64 float16 causal"
    spec: dict
    run_id: int | None = None
    created_at: str = ""


def shape_of(spec: dict[str, Any]) -> str:
    """The spec without its lengths: the measurements of one shape form one curve per variant."""
    heads, kv = spec.get("heads"), spec.get("kv_heads")
    head_text = f"H{heads}" + (f"/{kv}" if kv not in (None, heads) else "")
    text = f"B{spec.get('batch')} {head_text} D{spec.get('head_dim')} {spec.get('dtype')}"
    return text + (" causal" if spec.get("causal") else "")


def _footprint(spec: dict[str, Any], peak_bytes: int | None) -> int | None:
    if peak_bytes is None:
        return None
    try:
        inputs, _ = io_bytes(AttentionSpec.from_dict(spec))
    except (ValueError, TypeError):
        return None
    return inputs + int(peak_bytes)


def measurements(runs: Iterable[Any]) -> list[Measurement]:
    """The points of saved forward profile and sweep runs (`attn.runs.Run`; a run saved before the
    regimes is forward); other kinds and the train and decode regimes are skipped: a decode step
    of one new token is not a prefill of one token, nor a training step a forward call."""
    found = []
    for run in runs:
        if run.mode != "forward":
            continue
        env = run.environment or {}
        common = dict(device=str(env.get("device") or ""), device_kind=str(env.get("device_kind") or ""),
                      run_id=run.id, created_at=run.created_at)
        if run.kind == "profile":
            r, spec = run.results, run.results.get("spec") or run.spec
            if r.get("latency_ms") is None or not spec.get("seq"):
                continue
            found.append(Measurement(
                variant=str(r.get("variant") or run.variant), seq=int(spec["seq"]),
                batch=int(spec.get("batch") or 1), status="ok", latency_ms=r.get("latency_ms"),
                energy_j=r.get("energy_j"), peak_bytes=r.get("peak_bytes"),
                footprint_bytes=_footprint(spec, r.get("peak_bytes")),
                approx_error=r.get("approx_error"), shape=shape_of(spec), spec=spec, **common))
        elif run.kind == "sweep":
            for p in run.results.get("points") or []:
                spec = p.get("spec") or {}
                if not spec.get("seq"):
                    continue
                found.append(Measurement(
                    variant=str(p["variant"]), seq=int(spec["seq"]), batch=int(spec.get("batch") or 1),
                    status=str(p.get("status", "ok")), latency_ms=p.get("latency_ms"),
                    energy_j=p.get("energy_j"), peak_bytes=p.get("peak_bytes"),
                    footprint_bytes=p.get("footprint_bytes") or _footprint(spec, p.get("peak_bytes")),
                    approx_error=p.get("approx_error"), shape=shape_of(spec), spec=spec, **common))
    return found


def newest_per_point(points: Iterable[Measurement]) -> list[Measurement]:
    """One measurement per (device, shape, variant, seq): the newest run's (ids only grow)."""
    best: dict[tuple, Measurement] = {}
    for m in points:
        key = (m.device, m.shape, m.variant, m.seq)
        if key not in best or (m.run_id or 0) > (best[key].run_id or 0):
            best[key] = m
    return sorted(best.values(), key=lambda m: (m.variant, m.seq))


# -- dollars and joules per million tokens -------------------------------------------------------
@dataclass(frozen=True)
class TokenCost:
    variant: str
    seq: int
    batch: int
    tokens: int  # query tokens per call: batch * seq
    latency_ms: float
    price_per_hour: float
    usd_per_mtok: float
    joules_per_mtok: float | None
    energy_note: str  # empty when measured; otherwise why there is no J/Mtok
    device: str
    run_id: int | None


def tokens_per_call(batch: int, seq: int) -> int:
    return int(batch) * int(seq)


def usd_per_mtok(latency_ms: float, tokens: int, price_per_hour: float) -> float:
    """Dollars per million tokens: price per second * seconds per call / tokens per call * 1e6."""
    if tokens <= 0:
        raise ValueError(f"tokens per call must be positive, not {tokens}")
    return price_per_hour / 3600.0 * (latency_ms / 1e3) / tokens * 1e6


def joules_per_mtok(energy_j: float | None, tokens: int) -> float | None:
    """Joules per million tokens from the energy of one call; None without a reading."""
    if energy_j is None or tokens <= 0:
        return None
    return energy_j / tokens * 1e6


def token_costs(points: Iterable[Measurement], gpu_price_per_hour: float,
                cpu_price_per_hour: float) -> list[TokenCost]:
    """$/Mtok and J/Mtok of every measured point; a GPU run pays the GPU's price, a CPU run the CPU's."""
    rows = []
    for m in points:
        if m.status != "ok" or m.latency_ms is None:
            continue
        tokens = tokens_per_call(m.batch, m.seq)
        price = gpu_price_per_hour if m.device_kind == "cuda" else cpu_price_per_hour
        joules = joules_per_mtok(m.energy_j, tokens)
        note = "" if joules is not None else (ENERGY_ON_CPU if m.device_kind != "cuda" else ENERGY_MISSING)
        rows.append(TokenCost(m.variant, m.seq, m.batch, tokens, m.latency_ms, price,
                              usd_per_mtok(m.latency_ms, tokens, price), joules, note, m.device,
                              m.run_id))
    return rows


# -- the longest context a memory budget holds ---------------------------------------------------
@dataclass(frozen=True)
class ContextFit:
    variant: str
    max_seq: int | None  # the longest sequence that fits; None when none does or none is known
    projected: bool  # True: from the fitted memory curve, beyond what was measured
    note: str
    budget_bytes: int


def longest_context(points: Sequence[Measurement], budget_bytes: int,
                    saved_wall: dict[str, Any] | None = None) -> ContextFit:
    """The longest sequence whose footprint (inputs + the call's peak) fits `budget_bytes`.

    `points` are one variant's measurements of one shape. Measured when the budget falls inside
    the measured lengths (the answer is then the longest measured length that fits) or when a
    sweep's wall, bisected with real allocations, was found for about this budget. Projected when
    every measured length fits: the inputs, known exactly, plus the call's peak fitted as a power
    of the length (`attn.sweep.projected_wall`). An out-of-memory point counts as not fitting.
    """
    if not points:
        raise ValueError("longest_context needs at least one measurement")
    variant = points[0].variant
    if (saved_wall and not saved_wall.get("projected") and saved_wall.get("x")
            and abs(saved_wall.get("budget_bytes", 0) - budget_bytes) <= SAVED_WALL_TOLERANCE * budget_bytes):
        return ContextFit(variant, int(saved_wall["x"]), False,
                          f"measured: {saved_wall.get('note') or 'bisected with real allocations'}",
                          budget_bytes)
    ok = sorted((p for p in points if p.status == "ok" and p.footprint_bytes is not None),
                key=lambda p: p.seq)
    over = sorted({p.seq for p in ok if p.footprint_bytes > budget_bytes}
                  | {p.seq for p in points if p.status == "oom"})
    if over:
        fitting = [p for p in ok if p.footprint_bytes <= budget_bytes and p.seq < over[0]]
        if not fitting:
            return ContextFit(variant, None, False,
                              f"measured: the shortest length measured ({over[0]:,}) does not fit",
                              budget_bytes)
        best = fitting[-1]
        return ContextFit(variant, best.seq, False,
                          f"measured: {best.seq:,} fits ({best.footprint_bytes / 2**30:.3g} GiB); "
                          f"{over[0]:,} does not. The wall lies between them", budget_bytes)
    if len({p.seq for p in ok}) < 2:
        return ContextFit(variant, None, True,
                          "measure at least two lengths (a sweep) to project the wall", budget_bytes)
    base = AttentionSpec.from_dict(ok[-1].spec)
    workspace = fit_power_law([p.seq for p in ok], [p.peak_bytes for p in ok])
    # the call's measured peak already holds its output; the inputs are what it adds to that
    wall = projected_wall(lambda x: io_bytes(spec_at(base, "seq", x))[0], workspace,
                          int(budget_bytes), variant, ok[-1].seq)
    if wall.x is None:
        return ContextFit(variant, None, True, wall.note, budget_bytes)
    return ContextFit(variant, max(wall.x, ok[-1].seq), True,
                      f"{wall.note}; measured up to {ok[-1].seq:,}", budget_bytes)


# -- the quality/cost frontier -----------------------------------------------------------------
@dataclass(frozen=True)
class FrontierPoint:
    label: str
    error: float
    cost: float
    dominated: bool
    dominated_by: str | None  # the cheapest point that dominates this one


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(error, cost) a dominates b: no worse on both and strictly better on one."""
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def frontier(items: Iterable[tuple[str, float, float]]) -> list[FrontierPoint]:
    """Mark each (label, error, cost) dominated or on the Pareto frontier (lower is better)."""
    items = [(label, float(err), float(cost)) for label, err, cost in items]
    out = []
    for label, err, cost in items:
        beaters = sorted(((c, e, lab) for lab, e, c in items if dominates((e, c), (err, cost))))
        out.append(FrontierPoint(label, err, cost, bool(beaters), beaters[0][2] if beaters else None))
    return out


def frontier_at(points: Iterable[Measurement], seq: int, cost: str = "latency_ms") -> list[FrontierPoint]:
    """The frontier of the variants measured at one length: approx_error against `cost`
    (latency_ms or peak_bytes), one point per variant (its newest)."""
    if cost not in ("latency_ms", "peak_bytes", "footprint_bytes"):
        raise ValueError(f"cost must be latency_ms, peak_bytes or footprint_bytes, not {cost!r}")
    chosen = {m.variant: m for m in newest_per_point(p for p in points if p.seq == seq and p.status == "ok")}
    items = [(v, m.approx_error, getattr(m, cost)) for v, m in chosen.items()
             if m.approx_error is not None and getattr(m, cost) is not None]
    return frontier(items)


# -- what sharing keys and values saves ------------------------------------------------------------
@dataclass(frozen=True)
class KVSharing:
    kv_heads: int
    name: str  # "MHA (8 KV heads)", "GQA (2 KV heads)", "MQA (1 KV head)"
    bytes_per_token: int  # per token, all layers
    cache_bytes: int  # batch * context * bytes_per_token
    read_s_per_step: float  # one decode step reads the whole cache
    usd_per_mtok: float  # decode, memory-bound floor
    saved_bytes_per_token: int  # against MHA
    saved_usd_per_mtok: float
    fits: bool | None  # the cache within the memory budget; None without a budget


def sharing_name(heads: int, kv_heads: int) -> str:
    if kv_heads == heads:
        return f"MHA ({kv_heads} KV heads)"
    if kv_heads == 1:
        return "MQA (1 KV head)"
    return f"GQA ({kv_heads} KV heads, {heads // kv_heads} queries each)"


def kv_sharing(spec: AttentionSpec, batch: int, context: int, layers: int, bandwidth_gbps: float,
               price_per_hour: float, memory_bytes: int | None = None,
               kv_heads_options: Sequence[int] | None = None) -> list[KVSharing]:
    """KV-cache bytes and decode $/Mtok for each way of sharing the spec's heads (see
    DECODE_MODEL_NOTE), from no sharing (MHA) down to one KV head (MQA)."""
    if min(batch, context, layers) < 1:
        raise ValueError("batch, context and layers must be at least 1")
    if bandwidth_gbps <= 0:
        raise ValueError(f"bandwidth must be positive, not {bandwidth_gbps} GB/s")
    options = sorted(set(kv_heads_options or divisors(spec.heads)), reverse=True)
    bad = [k for k in options if spec.heads % k]
    if bad:
        raise ValueError(f"kv_heads {bad} do not divide heads ({spec.heads})")
    full = kv_cache_bytes_per_token(spec.with_(kv_heads=spec.heads)) * layers
    full_usd = _decode_usd_per_mtok(full, context, bandwidth_gbps, price_per_hour)
    rows = []
    for k in options:
        per_token = kv_cache_bytes_per_token(spec.with_(kv_heads=k)) * layers
        cache = batch * context * per_token
        usd = _decode_usd_per_mtok(per_token, context, bandwidth_gbps, price_per_hour)
        rows.append(KVSharing(k, sharing_name(spec.heads, k), per_token, cache,
                              cache / (bandwidth_gbps * 1e9), usd, full - per_token, full_usd - usd,
                              None if memory_bytes is None else cache <= memory_bytes))
    return rows


def _decode_usd_per_mtok(bytes_per_token: int, context: int, bandwidth_gbps: float,
                         price_per_hour: float) -> float:
    # per generated token: its own sequence's cache (context tokens) read once
    seconds = context * bytes_per_token / (bandwidth_gbps * 1e9)
    return price_per_hour / 3600.0 * seconds * 1e6

