"""performer: FAVOR+ (Choromanski et al., 2021), positive orthogonal random features whose dot
products estimate exp(q.k / sqrt(d)) without bias; more `features`, less variance."""
from __future__ import annotations

import functools
import math

import torch

from attn.params import Param
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.kernelized import (implied_weights, kernelized_attention, kernelized_flops,
                                      recurrent_decoder, recurrent_flops, state_bytes,
                                      visible_pairs)
from attn.variants.registry import Variant, register

FEATURES = Param("features", 256, "random features per head", lo=1, hi=16384)


@functools.lru_cache(maxsize=32)
def random_features(features: int, head_dim: int, seed: int) -> torch.Tensor:
    """(features, head_dim): blocks of orthogonal rows, each scaled to a Gaussian vector's norm."""
    gen = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-features // head_dim)):
        gaussian = torch.randn(head_dim, head_dim, generator=gen, dtype=torch.float64)
        q, _ = torch.linalg.qr(gaussian)
        blocks.append(q.T)
    w = torch.cat(blocks)[:features]
    norms = torch.randn(features, head_dim, generator=gen, dtype=torch.float64).norm(dim=1)
    return w * norms[:, None]


def positive_features(x, is_query: bool, spec: AttentionSpec):
    """phi(x) = exp(w.x' - |x'|^2 / 2 - c) / sqrt(m), x' = x / d^(1/4).

    The stabiliser c cancels in the normalisation: per row for queries, and one constant per
    (batch, head) for keys, so every key keeps the same scale.
    """
    w = random_features(spec.features, spec.head_dim, spec.seed).to(x.device, x.dtype)
    x = x * spec.head_dim ** -0.25
    proj = x @ w.T - (x * x).sum(-1, keepdim=True) / 2  # (B, H, N, m)
    if is_query:
        stab = proj.amax(-1, keepdim=True)
    else:
        stab = proj.amax(dim=(-1, -2), keepdim=True)
    return torch.exp(proj - stab) / math.sqrt(spec.features)


def flops(spec: AttentionSpec) -> int:
    rows = spec.batch * (spec.heads * spec.seq + spec.kv_heads * spec.kv_seq)
    return kernelized_flops(spec, spec.features) + 2 * rows * spec.head_dim * spec.features


def extra_bytes(spec: AttentionSpec) -> int:
    rows = spec.batch * (spec.heads * spec.seq + spec.kv_heads * spec.kv_seq)
    state = 2 * spec.batch * spec.heads * spec.features * spec.head_dim
    return (2 * rows * spec.features + state) * max(4, spec.dtype_bytes)


VARIANT = register(Variant(
    name="performer",
    title="Performer (FAVOR+)",
    summary="Positive orthogonal random features estimate the softmax kernel: O(S*m*D) for m "
            "`features`; more features, smaller error.",
    exact=False,
    params=(FEATURES,),
    run=lambda q, k, v, spec: kernelized_attention(positive_features, q, k, v, spec),
    weights=lambda q, k, spec, rows=None: implied_weights(positive_features, q, k, spec, rows),
    pairs=visible_pairs,
    flops=flops,
    extra_bytes=extra_bytes,
    color="#84cc16",
    mask=dense.causal_mask,
    decode_keys=lambda spec: 0,
    decode_state_bytes=lambda spec: state_bytes(spec, spec.features),
    decode_flops=lambda spec: recurrent_flops(spec, spec.features) + 2 * spec.batch * (spec.heads + spec.kv_heads) * spec.seq * spec.head_dim * spec.features,
    decoder=recurrent_decoder(positive_features),
))
