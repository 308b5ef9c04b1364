"""The source of a call's q, k and v, for the commands, jobs and pages that let a user choose it.

This module sits above attn.inputs (random inputs) and attn.models (captured ones), so that the
low-level inputs never import the transformers stack: the model captures q, k and v and they are
handed down from here. The commands, jobs and pages that take a source call `make_inputs`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from attn.device import resolve_device
from attn.inputs import random_qkv, torch_dtype
from attn.models import captured_qkv
from attn.regimes import decode_spec
from attn.spec import AttentionSpec

# the spec fields that describe the variants rather than the shape of the inputs
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


def make_inputs(spec: AttentionSpec, source: InputSource | None = None, mode: str = "forward"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionSpec]:
    """q, k, v and the spec they fit (a captured layer changes the shape). In decode, a model's
    text is the cache and its last spec.seq tokens (at most all of them) are the new ones."""
    source = source or InputSource()
    if mode == "decode" and source.kind != "random":
        q, k, v, full = make_inputs(spec, source)
        step = decode_spec(full, full.kv_seq, min(spec.seq, full.kv_seq))
        return q[:, :, -step.seq:].contiguous(), k, v, step
    if source.kind == "random":
        spec = spec.with_(device=resolve_device(spec.device))
        return (*random_qkv(spec, source.temperature), spec)
    if source.kind != "model":
        raise ValueError(f"unknown input source {source.kind!r}: choose random or model")
    if not source.text.strip():
        raise ValueError("captured inputs need some text to run the model on")
    q, k, v, layer_spec = captured_qkv(source.text, source.layer, source=source.model,
                                       max_tokens=source.max_tokens)
    device = resolve_device(spec.device)
    causal = layer_spec.causal or spec.causal
    # the variants' parameters and the seed describe the variants, not the shape of the inputs
    spec = layer_spec.with_(dtype=spec.dtype, device=device, causal=causal, seed=spec.seed,
                            **dict(spec.params))
    dtype = torch_dtype(spec.dtype)
    return (*(t.to(device=device, dtype=dtype).contiguous() for t in (q, k, v)), spec)


def input_spec(spec: AttentionSpec, source: InputSource, mode: str = "forward") -> AttentionSpec:
    """The spec the inputs of `source` have (the spec itself for random inputs)."""
    if source.kind == "random":
        return spec
    return make_inputs(spec, source, mode)[3]
