"""The one registry of attention variants: a name maps to everything attn knows about it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from attn.masks import Mask
from attn.spec import AttentionSpec

Tensor = torch.Tensor


def _no_reasons(spec: AttentionSpec, device: str) -> list[str]:
    return []


def _no_mask(spec: AttentionSpec) -> Mask | None:
    return None


@dataclass(frozen=True)
class Variant:
    """An attention variant.

    run(q, k, v, spec) -> out: the fast path. q is (B, H, S, D); k and v are (B, KVH, KV, D).
    weights(q, k, spec, rows) -> (B, H, len(rows), KV): the plain math of this variant's
        attention weights for some query rows (all rows when None). Applied to v in float64 it
        is the variant's reference; the maps draw it. Kernelised variants give their implied,
        row-normalised weights.
    pairs(spec): the unmasked (query, key) pairs per batch item and head.
    flops(spec): FLOPs of the attention core: useful FLOPs (4*B*H*D*pairs) for exact variants,
        the work they actually do for approximations.
    extra_bytes(spec): estimated peak memory of the call beyond its inputs and output.
    unsupported(spec, device): reasons, in words, why this variant cannot run the spec there.
    mask(spec): the mask it computes exactly, when it has one.
    """

    name: str
    title: str
    summary: str
    exact: bool
    params: tuple[str, ...]
    run: Callable[[Tensor, Tensor, Tensor, AttentionSpec], Tensor]
    weights: Callable[[Tensor, Tensor, AttentionSpec, Tensor | None], Tensor]
    pairs: Callable[[AttentionSpec], int]
    flops: Callable[[AttentionSpec], int]
    extra_bytes: Callable[[AttentionSpec], int]
    unsupported: Callable[[AttentionSpec, str], list[str]] = field(default=_no_reasons)
    mask: Callable[[AttentionSpec], Mask | None] = field(default=_no_mask)


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is registered twice")
    _REGISTRY[variant.name] = variant
    return variant


def get(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}: choose one of {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    return list(_REGISTRY)
