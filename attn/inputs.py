"""Inputs for an attention call: seeded random q, k, v on the spec's device."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from attn.device import resolve_device
from attn.spec import AttentionSpec


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def random_qkv(spec: AttentionSpec, temperature: float = 1.0, device: str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, H, S, D), k and v (B, KVH, KV, D), standard normal from `spec.seed`.

    Scores q.k/sqrt(d) are then about N(0, 1/temperature^2): a low temperature makes
    attention sharp, a high one flat.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
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


# the spec fields that describe the variants rather than the shape of the inputs
VARIANT_FIELDS = ("backend", "window", "block", "n_global", "n_random", "top_k", "features", "rank",
                  "seed")


@dataclass(frozen=True)
class InputSource:
    """Where q, k and v come from: seeded random numbers, or one layer of a real model.

    Random inputs take their shape from the spec. Captured inputs bring their own shape (the
    model's heads, head_dim and the text's tokens), and keep the spec's variant parameters, dtype
    and device, so an approximation's approx_error measures what it loses on real attention.
    """

    kind: str = "random"  # random | model
    temperature: float = 1.0
    model: str = "minilm"
    text: str = ""
    layer: int = 0
    max_tokens: int = 512

    def describe(self) -> str:
        if self.kind == "random":
            return f"random (seeded, temperature {self.temperature:g})"
        return f"{self.model} layer {self.layer}, {self.text[:40]!r}"


def make_inputs(spec: AttentionSpec, source: InputSource | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionSpec]:
    """q, k, v and the spec they fit (a captured layer changes the shape)."""
    source = source or InputSource()
    if source.kind == "random":
        spec = spec.with_(device=resolve_device(spec.device))
        return (*random_qkv(spec, source.temperature), spec)
    if source.kind != "model":
        raise ValueError(f"unknown input source {source.kind!r}: choose random or model")
    if not source.text.strip():
        raise ValueError("captured inputs need some text to run the model on")
    from attn.models import captured_qkv

    q, k, v, layer_spec = captured_qkv(source.text, source.layer, source=source.model,
                                       max_tokens=source.max_tokens)
    device = resolve_device(spec.device)
    keep = {name: getattr(spec, name) for name in VARIANT_FIELDS}
    causal = layer_spec.causal or spec.causal
    spec = layer_spec.with_(dtype=spec.dtype, device=device, causal=causal, **keep)
    dtype = torch_dtype(spec.dtype)
    return (*(t.to(device=device, dtype=dtype).contiguous() for t in (q, k, v)), spec)


def input_spec(spec: AttentionSpec, source: InputSource) -> AttentionSpec:
    """The spec the inputs of `source` have (the spec itself for random inputs)."""
    if source.kind == "random":
        return spec
    return make_inputs(spec, source)[3]
