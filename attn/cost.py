"""The analytic cost of an attention call: FLOPs, bytes and parameters, without running it.

FLOPs are "useful" FLOPs: 4 * B * H * D per unmasked (query, key) pair for the two attention
matmuls (q k^T and weights @ v, a multiply and an add each), so a causal mask halves them and a
kernel that computes masked-out tiles gets no credit for them. Approximations report the FLOPs of
the work they actually do. Projections are counted apart, in `proj_flops`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from attn import variants
from attn.masks import causal_pairs
from attn.spec import AttentionSpec

USEFUL_FLOPS_NOTE = ("useful FLOPs: 4·B·H·D per unmasked (query, key) pair for QKᵀ and AV; "
                     "approximations count the work they do")


@dataclass(frozen=True)
class Cost:
    variant: str
    exact: bool
    pairs: int  # unmasked (query, key) pairs per batch item and head
    full_pairs: int  # what exact attention with the same causal flag sees
    flops: int
    proj_flops: int  # Q, K, V and O projections of a d_model-wide layer
    min_bytes: int  # read q, k, v once and write the output once
    extra_bytes: int  # estimated workspace beyond inputs and output
    peak_bytes: int  # estimate: inputs + output + workspace
    kv_cache_bytes_per_token: int  # per layer
    params: int  # projection weights, with GQA sharing
    params_without_gqa: int
    arithmetic_intensity: float  # flops / min_bytes

    @property
    def density(self) -> float:
        return self.pairs / self.full_pairs if self.full_pairs else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "density": self.density}


def proj_flops(spec: AttentionSpec) -> int:
    """2 * B * S * d_model * (H + 2*KVH + H) * D: the Q, K, V and O projections."""
    return 2 * spec.batch * spec.seq * spec.d_model * (2 * spec.heads + 2 * spec.kv_heads) * spec.head_dim


def kv_cache_bytes_per_token(spec: AttentionSpec) -> int:
    """Keys and values kept per token and layer when decoding: 2 * KVH * D * bytes."""
    return 2 * spec.kv_heads * spec.head_dim * spec.dtype_bytes


def projection_params(spec: AttentionSpec, kv_heads: int | None = None) -> int:
    kvh = spec.kv_heads if kv_heads is None else kv_heads
    return spec.d_model * spec.head_dim * (2 * spec.heads + 2 * kvh)


def io_bytes(spec: AttentionSpec) -> tuple[int, int]:
    """(bytes of q, k and v; bytes of the output)."""
    q = spec.batch * spec.heads * spec.seq * spec.head_dim
    kv = 2 * spec.batch * spec.kv_heads * spec.kv_seq * spec.head_dim
    return (q + kv) * spec.dtype_bytes, q * spec.dtype_bytes


def attention_cost(spec: AttentionSpec, variant: str) -> Cost:
    v = variants.get(variant)
    inputs, output = io_bytes(spec)
    flops = v.flops(spec)
    extra = v.extra_bytes(spec)
    return Cost(
        variant=variant,
        exact=v.exact,
        pairs=v.pairs(spec),
        full_pairs=causal_pairs(spec),
        flops=flops,
        proj_flops=proj_flops(spec),
        min_bytes=inputs + output,
        extra_bytes=extra,
        peak_bytes=inputs + output + extra,
        kv_cache_bytes_per_token=kv_cache_bytes_per_token(spec),
        params=projection_params(spec),
        params_without_gqa=projection_params(spec, spec.heads),
        arithmetic_intensity=flops / (inputs + output),
    )
