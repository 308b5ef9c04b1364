"""Chapter 5, training against serving: a training step (forward + backward, attn.training) over a
sequence, and a decode step (attn.decoding) against a cache as long, both measured on this device
with the fused kernel, priced per million tokens as attn.regime_costs does:
    training: price per second × (forward_ms + backward_ms) / tokens in the step × 1e6
    decode:   price per second × step_ms / tokens generated × 1e6, split into the bandwidth floor
              (the bytes read at this device's calibrated copy bandwidth) and the rest.
The attention core of one layer alone, no projections or MLP."""
from __future__ import annotations

from typing import Callable

from attn import readable as fmt
from attn.economics import usd_per_mtok
from attn.spec import AttentionSpec
from attn.story.common import share, usd, where

SHAPE = dict(batch=1, heads=8, kv_heads=8, head_dim=64, d_model=512, dtype="float32", causal=True)
LENGTH = 1024
BUDGET_S = 0.2


def measure_train_serve(report: Callable[[float, str], None] | None = None, length: int | None = None,
                        budget_s: float | None = None) -> dict:
    from attn import measure
    from attn.regimes import decode_spec

    length, budget_s = length or LENGTH, budget_s or BUDGET_S
    here = where()
    base = AttentionSpec(**SHAPE, seq=length, kv_seq=length, device=here["device"])
    if report:
        report(0.05, f"a training step over {length:,} tokens")
    train = measure.profile(base, "sdpa", budget_s=budget_s, mode="train", check_errors=False)
    if report:
        report(0.6, f"a decode step against {length:,} cached tokens")
    step = measure.profile(decode_spec(base, length), "sdpa", budget_s=budget_s, mode="decode",
                           check_errors=False)
    price = here["price_per_hour"]
    tokens = base.batch * length
    floor = min(step.floor_ms or 0.0, step.latency_ms)
    return {**here, "length": length, "shape": "batch 1, 8 heads of 64, float32, causal, sdpa",
            "train": {"forward_ms": train.forward_ms, "backward_ms": train.backward_ms, "tokens": tokens,
                      "flops": train.flops, "bytes": train.cost["min_bytes"],
                      "usd_forward": usd_per_mtok(train.forward_ms, tokens, price),
                      "usd_backward": usd_per_mtok(train.backward_ms, tokens, price)},
            "decode": {"step_ms": step.latency_ms, "floor_ms": step.floor_ms, "bytes_read": step.bytes_read,
                       "flops": step.flops, "tokens": base.batch,
                       "usd_floor": usd_per_mtok(floor, base.batch, price),
                       "usd_rest": usd_per_mtok(step.latency_ms - floor, base.batch, price)}}


def train_serve_sentences(r: dict) -> list[str]:
    t, d, n = r["train"], r["decode"], r["length"]
    step = t["forward_ms"] + t["backward_ms"]
    train_usd, decode_usd = t["usd_forward"] + t["usd_backward"], d["usd_floor"] + d["usd_rest"]
    said = [
        f"Training: one step over {n:,} tokens took {fmt.ms(t['forward_ms'])} forward and "
        f"{fmt.ms(t['backward_ms'])} backward, so {share(t['backward_ms'], step)} of its cost is the "
        f"backward pass. It does {t['flops'] / t['bytes']:,.0f} useful FLOPs per byte it must move: "
        "training pays for arithmetic.",
    ]
    if d["floor_ms"] and d["floor_ms"] > d["step_ms"]:
        said.append(
            f"Serving: one new token against {n:,} cached tokens took {fmt.ms(d['step_ms'])}, faster than "
            f"reading its {fmt.nbytes(d['bytes_read'])} at this machine's measured bandwidth "
            f"({fmt.ms(d['floor_ms'])}): a cache this small stays in the processor's own caches. It does "
            f"{d['flops'] / d['bytes_read']:.1f} FLOPs per byte read: serving pays for memory.")
    elif d["floor_ms"]:
        said.append(
            f"Serving: one new token against {n:,} cached tokens took {fmt.ms(d['step_ms'])}; just reading "
            f"the cache at this machine's measured bandwidth takes {fmt.ms(d['floor_ms'])} "
            f"({share(min(d['floor_ms'], d['step_ms']), d['step_ms'])} of the step), and it does "
            f"{d['flops'] / d['bytes_read']:.1f} FLOPs per byte read: serving pays for memory.")
    else:
        said.append(f"Serving: one new token against {n:,} cached tokens took {fmt.ms(d['step_ms'])}; "
                    "its bandwidth floor is not known until this device is calibrated.")
    said.append(f"Per million tokens at {usd(r['price_per_hour'])} an hour: {usd(train_usd)} to train on "
                f"them, {usd(decode_usd)} to generate them, one token at a time "
                f"({fmt.ms(step / t['tokens'])} against {fmt.ms(d['step_ms'] / d['tokens'])} per token).")
    return said


def train_serve_numbers(r: dict) -> list[tuple[str, str]]:
    t, d = r["train"], r["decode"]
    return [("training step (measured)", f"forward {fmt.ms(t['forward_ms'])} · backward {fmt.ms(t['backward_ms'])}"
                                         f" · {t['tokens']:,} tokens"),
            ("training $ per million tokens", f"{usd(t['usd_forward'])} forward + {usd(t['usd_backward'])} backward"),
            ("decode step (measured)", f"{fmt.ms(d['step_ms'])} · reads {fmt.nbytes(d['bytes_read'])} · "
                                       f"floor {fmt.ms(d['floor_ms'])}"),
            ("decode $ per million tokens", f"{usd(d['usd_floor'])} reading the cache + {usd(d['usd_rest'])} the rest"),
            ("price", f"{usd(r['price_per_hour'])} per hour ({'GPU' if r['gpu'] else 'CPU VM'} default, "
                      "attn.economics)"),
            ("shape", r["shape"] + f", {r['length']:,} tokens"), ("scope", "the attention core of one layer")]
