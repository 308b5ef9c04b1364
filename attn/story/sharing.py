"""Chapter 4, sharing keys and values: MHA (every query head its own key/value head), GQA (a group
of query heads shares one) and MQA (all share one). The KV cache a 7B-class decoder keeps per
sequence at 8k to 128k tokens, from the cost model (attn.cost.kv_cache_bytes_per_token), and one
decode step measured on this device against the same cache under each sharing (attn.decoding)."""
from __future__ import annotations

from typing import Callable

from attn import readable as fmt
from attn.cost import kv_cache_bytes_per_token
from attn.spec import AttentionSpec
from attn.story.common import times, where

# a 7B-class decoder's attention, for the cache model: Llama-2-7B's published configuration
# (32 layers, 32 heads of 128) in 16-bit
REFERENCE = dict(layers=32, heads=32, head_dim=128, dtype="bfloat16")
REFERENCE_NAME = "a 7B-class decoder (32 layers, 32 heads of 128, 16-bit)"
CONTEXTS = (8192, 16384, 32768, 65536, 131072)
SHARINGS = (("MHA", 32), ("GQA", 8), ("MQA", 1))
# measured here: one layer's decode step, small enough for a CPU, with the same three ratios
STEP_SHAPE = dict(batch=1, heads=8, head_dim=64, d_model=512, dtype="float32")
STEP_SHARINGS = (("MHA", 8), ("GQA", 2), ("MQA", 1))
STEP_CONTEXT = 8192
BUDGET_S = 0.2


def cache_curve() -> list[dict]:
    """Bytes of keys and values per sequence, all layers, at each context and sharing."""
    spec = AttentionSpec(batch=1, seq=1, heads=REFERENCE["heads"], kv_heads=REFERENCE["heads"],
                         head_dim=REFERENCE["head_dim"], dtype=REFERENCE["dtype"])
    return [{"sharing": name, "kv_heads": kv, "context": n,
             "cache_bytes": kv_cache_bytes_per_token(spec.with_(kv_heads=kv)) * REFERENCE["layers"] * n}
            for name, kv in SHARINGS for n in CONTEXTS]


def measure_sharing(report: Callable[[float, str], None] | None = None, context: int | None = None,
                    budget_s: float | None = None) -> dict:
    from attn import measure
    from attn.regimes import decode_spec

    context, budget_s = context or STEP_CONTEXT, budget_s or BUDGET_S
    here = where()
    steps = []
    for i, (name, kv) in enumerate(STEP_SHARINGS):
        if report:
            report(i / len(STEP_SHARINGS), f"{name}: one decode step against {context:,} cached tokens")
        base = AttentionSpec(**STEP_SHAPE, kv_heads=kv, seq=1, device=here["device"])
        prof = measure.profile(decode_spec(base, context), "sdpa", budget_s=budget_s, mode="decode",
                               check_errors=False)
        steps.append({"sharing": name, "kv_heads": kv, "latency_ms": prof.latency_ms,
                      "bytes_read": prof.bytes_read, "floor_ms": prof.floor_ms})
    return {**here, "reference": REFERENCE_NAME, "cache": cache_curve(), "steps": steps,
            "step_context": context, "step_shape": "one layer: batch 1, 8 query heads of 64, float32"}


def _cache(r: dict, sharing: str, context: int) -> int:
    return next(p["cache_bytes"] for p in r["cache"] if p["sharing"] == sharing and p["context"] == context)


def sharing_sentences(r: dict) -> list[str]:
    longest = max(p["context"] for p in r["cache"])
    steps = {s["sharing"]: s for s in r["steps"]}
    return [
        f"For {r['reference']}, one {longest // 1024}k-token conversation keeps "
        f"{fmt.nbytes(_cache(r, 'MHA', longest))} of keys and values when every head has its own "
        f"(MHA); sharing one per four query heads (GQA) cuts it to {fmt.nbytes(_cache(r, 'GQA', longest))}, "
        f"one for all (MQA) to {fmt.nbytes(_cache(r, 'MQA', longest))}. That is the cost model, exact "
        "arithmetic on the shape, not a measurement.",
        f"Measured here: one decode step against {r['step_context']:,} cached tokens read "
        f"{fmt.nbytes(steps['MHA']['bytes_read'])} and took {fmt.ms(steps['MHA']['latency_ms'])} with MHA, "
        f"{fmt.ms(steps['GQA']['latency_ms'])} with GQA and {fmt.ms(steps['MQA']['latency_ms'])} with MQA "
        f"(reading {fmt.nbytes(steps['MQA']['bytes_read'])}).",
        _speed(steps),
    ]


def _speed(steps: dict) -> str:
    mha, gqa, mqa = steps["MHA"], steps["GQA"], steps["MQA"]
    fewer = times(mha["bytes_read"], mqa["bytes_read"])
    if mqa["latency_ms"] < mha["latency_ms"]:
        said = (f"Reading {fewer} fewer bytes made the step {times(mha['latency_ms'], mqa['latency_ms'])} "
                "faster: a decode step waits on memory, so a smaller cache means quicker tokens as well "
                "as more users per machine.")
    else:
        said = (f"Reading {fewer} fewer bytes did not make the step faster on this device; the smaller "
                "cache still means more users per machine.")
    if gqa["latency_ms"] >= mha["latency_ms"]:
        said += " GQA's step was not faster than MHA's here, though it reads 4× less."
    return said


def sharing_numbers(r: dict) -> list[tuple[str, str]]:
    rows = [(f"KV cache at {n // 1024}k tokens (cost model)",
             " · ".join(f"{s}: {fmt.nbytes(_cache(r, s, n))}" for s, _ in SHARINGS)) for n in CONTEXTS]
    rows += [(f"decode step, {s['sharing']} ({s['kv_heads']} KV heads, measured)",
              f"{fmt.ms(s['latency_ms'])} · reads {fmt.nbytes(s['bytes_read'])} · floor {fmt.ms(s['floor_ms'])}")
             for s in r["steps"]]
    return rows + [("cache model", r["reference"]), ("measured step", r["step_shape"] + f", {r['step_context']:,} "
                                                                   "cached tokens, sdpa")]
