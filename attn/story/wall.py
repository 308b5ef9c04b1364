"""Chapter 1, the quadratic wall: plain attention (dense, which writes the S×S weights out) and a
fused kernel (sdpa) measured at a few lengths on this device, and the cost model beyond them, up
to the length where each one's call no longer fits in the memory this device allows one call.

Measured: latency (median) and footprint (the inputs + the call's measured peak: what must fit).
Model, beyond the measured lengths: attn.cost's peak (inputs + output + workspace, the same
quantity) and a latency of useful FLOPs at the rate the longest measured point achieved. The wall
is the longest length whose modelled peak fits in attn.device.free_bytes (a GPU's free memory;
half the available RAM on a CPU), found by bisection on the cost model.
"""
from __future__ import annotations

from typing import Callable

from attn import readable as fmt
from attn.cost import attention_cost, io_bytes
from attn.spec import AttentionSpec
from attn.story.common import times, where

SHAPE = dict(batch=1, heads=8, kv_heads=8, head_dim=64, d_model=512, dtype="float32", causal=True)
MEASURED = (128, 256, 512, 1024)  # dense at 2048 takes ~1.5 s a call on a 2-core CPU
VARIANTS = ("dense", "sdpa")
TITLES = {"dense": "plain attention (dense)", "sdpa": "fused kernel (sdpa)"}
BUDGET_S = 0.15
MODEL_NOTE = ("model, not measured: attn.cost's peak (inputs + output + workspace) and useful FLOPs "
              "at the rate the longest measured length achieved")


def wall_length(base: AttentionSpec, variant: str, free: int, start: int) -> int:
    """The longest length whose modelled peak fits in `free` bytes (0 when `start` does not)."""
    def fits(n: int) -> bool:
        return attention_cost(base.with_(seq=n, kv_seq=n), variant).peak_bytes <= free

    if not fits(start):
        return 0
    lo, hi = start, start * 2
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def model_points(base: AttentionSpec, variant: str, rate_flops_per_s: float, upto: int) -> list[dict]:
    """The cost model at powers of two from the base length up to `upto` (and `upto` itself)."""
    xs, x = [], base.seq
    while x < upto:
        xs.append(x)
        x *= 2
    points = []
    for n in xs + [upto]:
        cost = attention_cost(base.with_(seq=n, kv_seq=n), variant)
        points.append({"variant": variant, "seq": n, "peak_bytes": cost.peak_bytes,
                       "latency_ms": cost.flops / rate_flops_per_s * 1e3 if rate_flops_per_s else None})
    return points


def measure_wall(report: Callable[[float, str], None] | None = None, lengths: tuple[int, ...] | None = None,
                 budget_s: float | None = None) -> dict:
    from attn import measure
    from attn.device import free_bytes

    lengths, budget_s = lengths or MEASURED, budget_s or BUDGET_S
    here = where()
    base = AttentionSpec(**SHAPE, seq=lengths[0], kv_seq=lengths[0], device=here["device"])
    measured, total = [], len(VARIANTS) * len(lengths)
    # a first call in a fresh worker pays for thread pools and allocator growth; not counted
    measure.profile(base, "sdpa", budget_s=0.02, check_errors=False)
    for name in VARIANTS:
        for n in lengths:
            if report:
                report(len(measured) / total, f"{name} at {n:,} tokens")
            spec = base.with_(seq=n, kv_seq=n)
            prof = measure.profile(spec, name, budget_s=budget_s, check_errors=False)
            measured.append({"variant": name, "seq": n, "latency_ms": prof.latency_ms,
                             "peak_bytes": io_bytes(spec)[0] + prof.peak_bytes, "flops": prof.flops})
    free = free_bytes(here["device"])
    walls, model = {}, []
    for name in VARIANTS:
        last = [p for p in measured if p["variant"] == name][-1]
        walls[name] = wall_length(base.with_(seq=last["seq"], kv_seq=last["seq"]), name, free, last["seq"])
        rate = last["flops"] / (last["latency_ms"] * 1e-3)
        model += model_points(base.with_(seq=last["seq"], kv_seq=last["seq"]), name, rate,
                              max(walls[name], last["seq"]))
    return {**here, "shape": SHAPE, "measured": measured, "model": model, "walls": walls,
            "free_bytes": free, "model_note": MODEL_NOTE}


def _at(points: list[dict], variant: str, seq: int) -> dict:
    return next(p for p in points if p["variant"] == variant and p["seq"] == seq)


def wall_sentences(r: dict) -> list[str]:
    longest = max(p["seq"] for p in r["measured"])
    shorter = max(p["seq"] for p in r["measured"] if p["seq"] < longest)
    dense, fused = _at(r["measured"], "dense", longest), _at(r["measured"], "sdpa", longest)
    grew = dense["peak_bytes"] / _at(r["measured"], "dense", shorter)["peak_bytes"]
    allowed = "free GPU memory" if r["gpu"] else "half of this machine's free RAM, what attn lets one call use"
    walls = r["walls"]
    return [
        f"At {longest:,} tokens, plain attention needed {fmt.nbytes(dense['peak_bytes'])} and "
        f"{fmt.ms(dense['latency_ms'])} on this {r['device_name']}; the fused kernel needed "
        f"{fmt.nbytes(fused['peak_bytes'])} and {fmt.ms(fused['latency_ms'])}.",
        f"Going from {shorter:,} to {longest:,} tokens multiplied plain attention's memory by "
        f"{grew:.1f}: twice the text, about four times the memory. That is the square in "
        "\"quadratic\": every token is compared with every other.",
        f"With {fmt.nbytes(r['free_bytes'])} to spend ({allowed}), the cost model puts plain "
        f"attention's wall at {walls['dense']:,} tokens and the fused kernel's at {walls['sdpa']:,}: "
        f"{times(walls['sdpa'], walls['dense'])} longer, with the same arithmetic, because it never "
        "writes the whole table of weights down.",
    ]


def wall_numbers(r: dict) -> list[tuple[str, str]]:
    rows = [(f"{TITLES[p['variant']]} at {p['seq']:,} tokens (measured)",
             f"{fmt.ms(p['latency_ms'])} · {fmt.nbytes(p['peak_bytes'])}") for p in r["measured"]]
    rows += [(f"memory wall, {TITLES[v]} (cost model)", f"{n:,} tokens") for v, n in r["walls"].items()]
    rows.append(("memory one call may use", fmt.nbytes(r["free_bytes"])))
    rows.append(("shape", "batch 1, 8 heads of 64, float32, causal"))
    return rows
