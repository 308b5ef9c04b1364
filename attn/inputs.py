"""Inputs for an attention call: seeded random q, k, v on the spec's device.

Low level: nothing here knows about models. q, k and v captured from a model's layer are handed
down by attn.sources, which sits above this module and attn.models.
"""
from __future__ import annotations

import math

import torch

from attn.device import resolve_device
from attn.spec import AttentionSpec


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


TEMPERATURE_RANGE = (0.01, 100.0)  # every variant's output stays finite in float16 at both ends


def check_temperature(temperature: float) -> None:
    """Refuses a temperature the inputs cannot carry. NaN passes a plain `<= 0` test and would
    fill q with NaN; a tiny one (1e-300) overflows q to inf, so every error reads NaN: a profile of
    nothing. Below 0.01 each row is already its arg max, and above 100 already uniform, so the
    range loses no attention a user could see."""
    lo, hi = TEMPERATURE_RANGE
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and lo <= temperature <= hi):
        raise ValueError(f"temperature must be between {lo:g} and {hi:g} (q is divided by it), got {temperature}")


def random_qkv(spec: AttentionSpec, temperature: float = 1.0, device: str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, H, S, D), k and v (B, KVH, KV, D), standard normal from `spec.seed`.

    Scores q.k/sqrt(d) are then about N(0, 1/temperature^2): a low temperature makes
    attention sharp, a high one flat.
    """
    check_temperature(temperature)
    device = resolve_device(device or spec.device)
    gen = torch.Generator().manual_seed(spec.seed)
    shape_q = (spec.batch, spec.heads, spec.seq, spec.head_dim)
    shape_kv = (spec.batch, spec.kv_heads, spec.kv_seq, spec.head_dim)
    # drawn on the CPU so a seed gives the same numbers on every device
    q = torch.randn(shape_q, generator=gen) / temperature
    k = torch.randn(shape_kv, generator=gen)
    v = torch.randn(shape_kv, generator=gen)
    dtype = torch_dtype(spec.dtype)
    return tuple(t.to(device=device, dtype=dtype) for t in (q, k, v))
