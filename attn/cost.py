"""The analytic cost of an attention call: FLOPs, bytes and parameters, without running it.

FLOPs are "useful" FLOPs: 4 * B * H * D per unmasked (query, key) pair for the two attention
matmuls (q k^T and weights @ v, a multiply and an add each), so a causal mask halves them and a
kernel that computes masked-out tiles gets no credit for them. Approximations report the FLOPs of
the work they actually do. Projections are counted apart, in `proj_flops`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from attn import variants
from attn.masks import causal_pairs
from attn.regimes import (DECODE_CONVENTION, EXECUTED_CONVENTION, TRAIN_CONVENTION, check_mode,
                          is_decode_spec)
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
    mode: str = "forward"
    flops_convention: str = USEFUL_FLOPS_NOTE
    # train: FLOPs executed where the backward recomputes the scores (FlashAttention's count)
    flops_executed: int | None = None
    saved_bytes: int | None = None  # train: what the forward keeps for the backward
    backward_bytes: int | None = None  # train: the backward's workspace beyond saved and grads
    # train: what one step allocates above its inputs and the upstream gradient (the measured
    # peak's prediction); forward and decode: the output and the workspace
    step_bytes: int | None = None
    bytes_read: int | None = None  # decode: the cache or state one step reads, and the queries
    cached_keys: int | None = None  # decode: the cached keys one step reads

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


def attention_cost(spec: AttentionSpec, variant: str, mode: str = "forward") -> Cost:
    """The cost of one call in a regime (attn.regimes): `forward`, `train` (forward + backward)
    or `decode` (spec.seq new tokens against spec.kv_seq cached keys; see regimes.decode_spec)."""
    v = variants.get(variant)
    check_mode(mode)
    if mode in v.cannot:
        raise ValueError(v.cannot[mode])
    if mode == "decode" and not is_decode_spec(spec):
        raise ValueError("a decode step is causal from the bottom right with at most as many new "
                         "tokens (seq) as cached keys (kv_seq): build it with regimes.decode_spec")
    inputs, output = io_bytes(spec)
    flops = v.flops(spec)
    extra = v.extra_bytes(spec)
    cost = Cost(
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
        step_bytes=output + extra,
    )
    if mode == "train":
        return _train_cost(cost, v, spec, inputs, output)
    if mode == "decode":
        return _decode_cost(cost, v, spec, output)
    return cost


def _train_cost(cost: Cost, v, spec: AttentionSpec, inputs: int, output: int) -> Cost:
    forward = cost.flops
    saved, backward = v.train_bytes(spec)
    # the forward's peak, or the backward's: the output (alive through the backward; counted
    # once where the forward keeps it among its saved tensors), what the forward kept, the
    # backward's workspace and the gradients of q, k and v (as large as q, k and v)
    alive_output = 0 if v.saves_output(spec) else output
    step = max(output + cost.extra_bytes, alive_output + saved + backward + inputs)
    # the forward reads q, k, v and writes O; the backward reads q, k, v, O and dO, writes dq, dk, dv
    moved = 3 * inputs + 3 * output
    recomputes = v.recomputes(spec)
    return replace(
        cost, mode="train", flops=3 * forward, flops_executed=7 * forward // 2 if recomputes else None,
        flops_convention=TRAIN_CONVENTION + ("; " + EXECUTED_CONVENTION if recomputes else ""),
        saved_bytes=saved, backward_bytes=backward, step_bytes=step,
        peak_bytes=inputs + output + step, min_bytes=moved, arithmetic_intensity=3 * forward / moved)


def _decode_cost(cost: Cost, v, spec: AttentionSpec, output: int) -> Cost:
    queries = spec.batch * spec.heads * spec.seq * spec.head_dim * spec.dtype_bytes
    per_key = 2 * spec.batch * spec.kv_heads * spec.head_dim * spec.dtype_bytes  # a key and its value
    if v.decode_state_bytes is not None:  # a recurrent state, and the new tokens' keys and values
        keys, cache = 0, v.decode_state_bytes(spec) + per_key * spec.seq
    else:
        keys = v.decode_keys(spec)
        cache = per_key * keys
    flops = v.decode_flops(spec) if v.decode_flops is not None else cost.flops
    read = cache + queries
    return replace(cost, mode="decode", flops=flops, flops_convention=DECODE_CONVENTION,
                   bytes_read=read, cached_keys=keys, min_bytes=read + output,
                   peak_bytes=read + output + cost.extra_bytes,
                   arithmetic_intensity=flops / (read + output))
