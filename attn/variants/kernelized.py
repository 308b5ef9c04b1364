"""Kernelised (linear-time) attention shared by `linear` and `performer`.

softmax(q.k) is replaced by phi(q).phi(k) for a feature map phi, so
    out_i = phi(q_i) . sum_j phi(k_j) v_j^T  /  phi(q_i) . sum_j phi(k_j)
costs O(S * F * D) instead of O(S^2 * D). Causal attention keeps running prefix sums of
phi(k) v^T, one chunk of queries at a time (inside a chunk the few pairs are done directly).
The implied weights phi(q_i).phi(k_j) / sum_j' phi(q_i).phi(k_j') are what the maps draw.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from attn.masks import causal_pairs
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.gqa import repeat_kv
from attn.variants.softmax import select_rows

FeatureMap = Callable[[torch.Tensor, bool, AttentionSpec], torch.Tensor]  # (x, is_query, spec)
CHUNK = 64


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # sums of many positive terms: accumulate half precision inputs in float32
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def causal_chunks(spec: AttentionSpec, chunk: int = CHUNK) -> Iterator[tuple[int, int, int, int]]:
    """(lo, hi, prefix_end, own_end) per chunk of queries lo..hi-1: keys before prefix_end are
    seen by every query of the chunk (they go through the running sums); keys prefix_end..own_end
    are seen by some and are done pair by pair."""
    off, kv = spec.position_offset, spec.kv_seq
    for lo in range(0, spec.seq, chunk):
        hi = min(spec.seq, lo + chunk)
        yield lo, hi, min(kv, max(0, lo + off)), min(kv, max(0, hi - 1 + off + 1))


def implied_weights(phi: FeatureMap, q, k, spec: AttentionSpec, rows=None):
    q, rows = select_rows(q, rows)
    dtype = _compute_dtype(q)
    fq = phi(q.to(dtype), True, spec)
    fk = repeat_kv(phi(k.to(dtype), False, spec), spec.groups)
    a = fq @ fk.transpose(-1, -2)  # (B, H, rows, KV)
    mask = dense.causal_mask(spec)
    if mask is not None:
        a = a * mask.fn(rows[:, None], torch.arange(spec.kv_seq, device=q.device)[None, :])
    total = a.sum(-1, keepdim=True)
    return torch.where(total > 0, a / total, torch.zeros_like(a)).to(q.dtype)


def kernelized_attention(phi: FeatureMap, q, k, v, spec: AttentionSpec):
    dtype = _compute_dtype(q)
    fq = phi(q.to(dtype), True, spec)  # (B, H, S, F)
    fk = phi(k.to(dtype), False, spec)  # (B, KVH, KV, F)
    v = v.to(dtype)
    g = spec.groups
    if not spec.causal:
        state = repeat_kv(fk.transpose(-1, -2) @ v, g)  # (B, H, F, D)
        z = repeat_kv(fk.sum(-2, keepdim=True), g)  # (B, H, 1, F)
        num, den = fq @ state, (fq * z).sum(-1, keepdim=True)
    else:
        b, h, s, f = fq.shape
        num = fq.new_zeros(b, h, s, v.shape[-1])
        den = fq.new_zeros(b, h, s, 1)
        state = fq.new_zeros(b, spec.kv_heads, f, v.shape[-1])
        z = fq.new_zeros(b, spec.kv_heads, 1, f)
        absorbed = 0
        for lo, hi, prefix_end, own_end in causal_chunks(spec):
            if prefix_end > absorbed:  # fold the keys every query here sees into the sums
                state = state + fk[:, :, absorbed:prefix_end].transpose(-1, -2) @ v[:, :, absorbed:prefix_end]
                z = z + fk[:, :, absorbed:prefix_end].sum(-2, keepdim=True)
                absorbed = prefix_end
            fq_c = fq[:, :, lo:hi]
            num[:, :, lo:hi] = fq_c @ repeat_kv(state, g)
            den[:, :, lo:hi] = (fq_c * repeat_kv(z, g)).sum(-1, keepdim=True)
            if own_end > prefix_end:
                keys = torch.arange(prefix_end, own_end, device=q.device)
                pos = torch.arange(lo, hi, device=q.device) + spec.position_offset
                a = fq_c @ repeat_kv(fk[:, :, prefix_end:own_end], g).transpose(-1, -2)
                a = a * (keys[None, :] <= pos[:, None])
                num[:, :, lo:hi] += a @ repeat_kv(v[:, :, prefix_end:own_end], g)
                den[:, :, lo:hi] += a.sum(-1, keepdim=True)
    out = torch.where(den > 0, num / den, torch.zeros_like(num))  # no visible key: 0
    return out.to(q.dtype)


def recurrent_decoder(phi: FeatureMap):
    """decoder(q, k, v, spec) -> step() for a kernelised variant: the cache of a decode step is
    a recurrent state, per key/value head the F x D sum of phi(k) v^T and the F sum of phi(k)
    over every earlier token, so a step costs the same at any context. The new tokens (the last
    spec.seq of the cache, each seeing itself and those before it) fold into the state and
    their queries read it. The keys' features are computed as the keys enter the cache (the
    Performer's stabiliser is one constant over a head's keys, as in the forward)."""
    def decoder(q, k, v, spec: AttentionSpec):
        dtype = _compute_dtype(q)
        n, past = spec.seq, spec.kv_seq - spec.seq
        b, kvh, g = q.shape[0], spec.kv_heads, spec.groups
        fk = phi(k.to(dtype), False, spec)  # (B, KVH, KV, F)
        v = v.to(dtype)
        state = fk[:, :, :past].transpose(-1, -2) @ v[:, :, :past]  # (B, KVH, F, D)
        z = fk[:, :, :past].sum(-2)  # (B, KVH, F)
        fk_new, v_new = fk[:, :, past:].contiguous(), v[:, :, past:].contiguous()  # (B, KVH, n, .)

        def step():
            fq = phi(q.to(dtype), True, spec)  # (B, H, n, F)
            fq = fq.reshape(b, kvh, g, n, fq.shape[-1])
            # the state after each new token: the running sums over the new tokens
            states = state[:, :, None] + (fk_new[..., :, None] * v_new[..., None, :]).cumsum(2)
            zs = z[:, :, None] + fk_new.cumsum(2)  # (B, KVH, n, F)
            num = torch.einsum("bkgnf,bknfd->bkgnd", fq, states)
            den = torch.einsum("bkgnf,bknf->bkgn", fq, zs)[..., None]
            out = torch.where(den > 0, num / den, torch.zeros_like(num))
            return out.reshape(b, kvh * g, n, -1).to(q.dtype)
        return step
    return decoder


def state_bytes(spec: AttentionSpec, features: int) -> int:
    """The recurrent state a decode step reads: per key/value head F x D sums and F sums, at
    float32 or wider."""
    return spec.batch * spec.kv_heads * features * (spec.head_dim + 1) * max(4, spec.dtype_bytes)


def recurrent_flops(spec: AttentionSpec, features: int) -> int:
    """A recurrent decode step: phi(k) v^T of each new token into the state, and each new query
    against the state and its normaliser (2 per multiply-add)."""
    b, f, d, n = spec.batch, features, spec.head_dim, spec.seq
    return 2 * b * spec.kv_heads * n * f * d + 2 * b * spec.heads * n * f * (d + 1)


def kernelized_flops(spec: AttentionSpec, features: int) -> int:
    """Matmul FLOPs of kernelized_attention as it runs (2 per multiply-add)."""
    b, h, kvh, d, f = spec.batch, spec.heads, spec.kv_heads, spec.head_dim, features
    state = 2 * b * kvh * spec.kv_seq * f * d  # phi(k)^T v, each key once
    query = 2 * b * h * spec.seq * f * (d + 1)  # phi(q) against the sums and the normaliser
    if not spec.causal:
        return state + query
    return state + query + 2 * b * h * own_pairs(spec) * (f + d)


def own_pairs(spec: AttentionSpec, chunk: int = CHUNK) -> int:
    """Pairs done one by one inside the chunks: the sum over causal_chunks of
    (hi - lo) * (own_end - prefix_end), in closed form. A whole chunk's own keys run from
    clamp(lo + off) to clamp(lo + chunk + off), so over the whole chunks they telescope."""
    off, kv = spec.position_offset, spec.kv_seq

    def clamp(x: int) -> int:
        return min(kv, max(0, x))

    whole = spec.seq // chunk
    end = whole * chunk
    return (chunk * (clamp(end + off) - clamp(off))
            + (spec.seq - end) * (clamp(spec.seq + off) - clamp(end + off)))


def visible_pairs(spec: AttentionSpec) -> int:
    return causal_pairs(spec)
