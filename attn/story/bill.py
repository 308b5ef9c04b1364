"""Chapter 6, the bill: dollars and joules per million tokens of attention on this device, and an
H100's from the anchor figures (attn.story.anchors, not measured here), at the anchor's own shape
(batch 4, 16 heads of 128, causal; float32 here, bf16 on the H100):

- prefill: one causal forward over `LENGTH` tokens: $/Mtok = price per second × latency / tokens
  × 1e6 (attn.economics.usd_per_mtok). Measured here; the H100's is the anchor's FlashAttention time.
- decode: one new token per sequence against a cache of `CONTEXT` tokens. Measured here; for the
  H100, the bandwidth floor (the step's bytes, in bf16, at the anchor's copy bandwidth): a model.
- joules: from the GPU's energy counter where attn can read one; none on a CPU. For the H100, an
  upper bound at its power limit: the anchors carry no energy reading.
"""
from __future__ import annotations

from typing import Callable

from attn import readable as fmt
from attn.cost import attention_cost
from attn.economics import DEFAULT_GPU_PRICE_PER_HOUR, joules_per_mtok, usd_per_mtok
from attn.regimes import decode_spec
from attn.spec import AttentionSpec
from attn.story import anchors
from attn.story.common import times, usd, where

LENGTH = 512
CONTEXT = 4096
BUDGET_S = 0.3
SHAPE_TEXT = "batch 4, 16 heads of 128, causal"


def _spec(device: str, dtype: str) -> AttentionSpec:
    s = anchors.SHAPE
    return AttentionSpec(batch=s["batch"], seq=LENGTH, kv_seq=LENGTH, heads=s["heads"], kv_heads=s["heads"],
                         head_dim=s["head_dim"], d_model=s["heads"] * s["head_dim"], dtype=dtype,
                         causal=True, device=device)


def h100_bill() -> dict:
    """The H100's prefill and decode $ per million tokens from the anchors (and a decode floor)."""
    spec = _spec("cpu", anchors.SHAPE["dtype"])
    tokens = spec.batch * LENGTH
    prefill_ms = anchors.FLASH_CAUSAL_MS[LENGTH]
    read = attention_cost(decode_spec(spec, CONTEXT), "sdpa", "decode").bytes_read
    decode_ms = read / (anchors.COPY_GBPS * 1e9) * 1e3
    price = DEFAULT_GPU_PRICE_PER_HOUR
    return {"device": anchors.DEVICE, "source": anchors.SOURCE, "price_per_hour": price,
            "prefill_ms": prefill_ms, "prefill_usd": usd_per_mtok(prefill_ms, tokens, price),
            "prefill_joules_at_most": joules_per_mtok(anchors.POWER_LIMIT_W * prefill_ms / 1e3, tokens),
            "decode_floor_ms": decode_ms, "decode_bytes": read,
            "decode_usd": usd_per_mtok(decode_ms, spec.batch, price),
            "decode_joules_at_most": joules_per_mtok(anchors.POWER_LIMIT_W * decode_ms / 1e3, spec.batch),
            "power_source": anchors.POWER_SOURCE}


def measure_bill(report: Callable[[float, str], None] | None = None, budget_s: float | None = None) -> dict:
    from attn import measure

    budget_s = budget_s or BUDGET_S
    here = where()
    dtype = "bfloat16" if here["gpu"] else "float32"  # bf16 matmuls crawl on a CPU
    spec = _spec(here["device"], dtype)
    if report:
        report(0.05, f"a causal prefill of {LENGTH} tokens at the H100 anchor's shape")
    prefill = measure.profile(spec, "sdpa", budget_s=budget_s, check_errors=False)
    if report:
        report(0.6, f"a decode step against {CONTEXT:,} cached tokens")
    step = measure.profile(decode_spec(spec, CONTEXT), "sdpa", budget_s=budget_s, mode="decode",
                           check_errors=False)
    price, tokens = here["price_per_hour"], spec.batch * LENGTH
    return {**here, "dtype": dtype, "length": LENGTH, "context": CONTEXT, "shape": SHAPE_TEXT,
            "prefill_ms": prefill.latency_ms, "prefill_usd": usd_per_mtok(prefill.latency_ms, tokens, price),
            "prefill_joules": joules_per_mtok(prefill.energy_j, tokens),
            "decode_ms": step.latency_ms, "decode_usd": usd_per_mtok(step.latency_ms, spec.batch, price),
            "decode_joules": joules_per_mtok(step.energy_j, spec.batch),
            "h100": h100_bill()}


def _joules(value: float | None) -> str:
    return "not measured" if value is None else f"{value:,.3g} J"


def bill_sentences(r: dict) -> list[str]:
    h = r["h100"]
    here = f"{usd(r['price_per_hour'])} an hour"
    energy = ("This CPU has no energy counter attn can read, so its joules are not measured."
              if not r["gpu"] else
              f"Energy here: {_joules(r['prefill_joules'])} per million prefill tokens.")
    return [
        f"On this {r['device_name']}, at {here}, attention over a {r['length']}-token prompt ({r['shape']}) "
        f"costs {usd(r['prefill_usd'])} per million tokens, and generating with a {r['context']:,}-token cache "
        f"{usd(r['decode_usd'])} per million new tokens (one layer's attention core, measured).",
        f"An H100 at {usd(h['price_per_hour'])} an hour ran the same prompt (in bfloat16) in {fmt.ms(h['prefill_ms'])}: "
        f"{usd(h['prefill_usd'])} per million tokens, {times(r['prefill_usd'], h['prefill_usd'])} cheaper; its "
        f"decode floor is {usd(h['decode_usd'])}. These are the anchor run's figures, not measured here.",
        f"{energy} The H100 would use at most {_joules(h['prefill_joules_at_most'])} per million prompt "
        "tokens, if it drew its full 700 W.",
    ]


def bill_numbers(r: dict) -> list[tuple[str, str]]:
    h = r["h100"]
    return [
        (f"this device: prefill, {r['length']} tokens (measured)",
         f"{fmt.ms(r['prefill_ms'])} · {usd(r['prefill_usd'])}/Mtok · {_joules(r['prefill_joules'])}/Mtok"),
        (f"this device: decode, {r['context']:,} cached (measured)",
         f"{fmt.ms(r['decode_ms'])} · {usd(r['decode_usd'])}/Mtok · {_joules(r['decode_joules'])}/Mtok"),
        ("this device: price, dtype", f"{usd(r['price_per_hour'])}/hour · {r['dtype']}"),
        ("H100: prefill (anchor, not measured here)",
         f"{fmt.ms(h['prefill_ms'])} · {usd(h['prefill_usd'])}/Mtok · at most "
         f"{_joules(h['prefill_joules_at_most'])}/Mtok"),
        ("H100: decode floor (model from the anchor's bandwidth)",
         f"{fmt.ms(h['decode_floor_ms'])} · {usd(h['decode_usd'])}/Mtok · reads {fmt.nbytes(h['decode_bytes'])}"),
        ("H100: price, dtype", f"{usd(h['price_per_hour'])}/hour · bfloat16"),
        ("H100 source", h["source"]), ("H100 power bound", h["power_source"]),
        ("shape", r["shape"]),
    ]
