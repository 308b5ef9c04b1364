"""topk: each query keeps only its `top_k` highest-scoring visible keys and softmaxes over them."""
from __future__ import annotations

import math

import torch

from attn.masks import causal_key_range, causal_pairs, sum_clamped
from attn.params import Param
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.gqa import repeat_kv
from attn.variants.registry import Variant, register
from attn.variants.softmax import masked_softmax, select_rows

TOP_K = Param("top_k", 32, "keys kept per query", lo=1, hi=1 << 20, unit="keys")

CHUNK = 128  # queries per step: scores are B*H*CHUNK*KV at a time


def _keep_top(scores: torch.Tensor, allowed: torch.Tensor | None, top_k: int):
    """Scores of the kept keys (masked keys at -inf) and their indices: (..., k) each."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.topk(min(top_k, scores.shape[-1]), dim=-1)


def _score_dtype(x: torch.Tensor) -> torch.dtype:
    # which keys make the cut must not hinge on half-precision rounding of near-equal scores:
    # score and choose in float32, so the choice matches the float64 math
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def weights(q, k, spec: AttentionSpec, rows=None):
    q, rows = select_rows(q, rows)
    dtype = _score_dtype(q)
    k = repeat_kv(k.to(dtype), spec.groups)
    scores = (q.to(dtype) @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = dense.causal_mask(spec)
    allowed = mask.fn(rows[:, None], torch.arange(spec.kv_seq, device=q.device)[None, :]) if mask else None
    _, idx = _keep_top(scores, allowed, spec.top_k)
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True)
    if allowed is not None:
        keep &= allowed
    return masked_softmax(scores, keep).to(q.dtype)


def run(q, k, v, spec: AttentionSpec):
    b, h, s, d = q.shape
    dtype = _score_dtype(q)
    mask = dense.causal_mask(spec)
    out = q.new_zeros(b, h, s, v.shape[-1])
    for lo in range(0, s, CHUNK):
        hi = min(s, lo + CHUNK)
        start, stop = causal_key_range(spec, lo, hi) if mask else (0, spec.kv_seq)
        if stop <= start:
            continue
        k_c = repeat_kv(k[:, :, start:stop].to(dtype), spec.groups)
        v_c = repeat_kv(v[:, :, start:stop].to(dtype), spec.groups)
        scores = (q[:, :, lo:hi].to(dtype) @ k_c.transpose(-1, -2)) / math.sqrt(d)  # (B,H,C,keys)
        allowed = None
        if mask:
            allowed = mask.fn(torch.arange(lo, hi, device=q.device)[:, None],
                              torch.arange(start, stop, device=q.device)[None, :])
        top, idx = _keep_top(scores, allowed, spec.top_k)  # (B, H, C, k)
        w = masked_softmax(top, None).nan_to_num(0.0)  # rows with no visible key: -inf -> 0
        c = hi - lo
        picked = v_c[:, :, None].expand(b, h, c, *v_c.shape[-2:]).gather(
            3, idx[..., None].expand(*idx.shape, v_c.shape[-1]))  # (B, H, C, k, D)
        out[:, :, lo:hi] = torch.einsum("bhck,bhckd->bhcd", w, picked).to(out.dtype)
    return out


def kept_pairs(spec: AttentionSpec) -> int:
    """Sum over queries of min(top_k, keys the query can see)."""
    if not spec.causal:
        return spec.seq * min(spec.top_k, spec.kv_seq)
    return int(sum_clamped(spec.position_offset + 1, spec.seq, min(spec.top_k, spec.kv_seq)))


def flops(spec: AttentionSpec) -> int:
    # every visible score is computed to find the top ones; only kept keys are read from v
    per_pair = 2 * spec.batch * spec.heads * spec.head_dim
    return per_pair * (causal_pairs(spec) + kept_pairs(spec))


def extra_bytes(spec: AttentionSpec) -> int:
    # per chunk: scores and their masked copy (float32 at least), the kept values and int64
    # indices, the gathered values and their product; k and v widened for GQA
    b, h, c, k = spec.batch, spec.heads, min(CHUNK, spec.seq), min(spec.top_k, spec.kv_seq)
    scores = 2 * b * h * c * spec.kv_seq * max(4, spec.dtype_bytes)
    kept = b * h * c * k * (8 + max(4, spec.dtype_bytes))
    gathered = 2 * b * h * c * k * spec.head_dim * spec.dtype_bytes
    widened = 2 * b * h * spec.kv_seq * spec.head_dim * spec.dtype_bytes
    return scores + kept + gathered + widened


VARIANT = register(Variant(
    name="topk",
    title="Top-k",
    summary="Each query keeps its `top_k` highest-scoring keys: an approximation that still "
            "computes every score, but reads only k values.",
    exact=False,
    params=(TOP_K,),
    run=run,
    weights=weights,
    pairs=kept_pairs,
    flops=flops,
    extra_bytes=extra_bytes,
    color="#8b5cf6",
    mask=dense.causal_mask,
))
