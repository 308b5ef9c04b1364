"""linformer: keys and values projected along the sequence to `rank` rows (Wang et al., 2020).

Untrained, the projection here is segment pooling: projected row j is the mean of the keys (and
values) of segment j, and its score gets + log(segment length), so that it stands for all the
keys it pools. At rank >= kv_seq every segment is one key and the result is exact attention.
Mixing keys across positions cannot respect a causal mask, so linformer runs only without one.
"""
from __future__ import annotations

import functools
import math

import torch

from attn.params import Param
from attn.spec import AttentionSpec
from attn.variants.gqa import repeat_kv
from attn.variants.registry import Variant, register
from attn.variants.softmax import select_rows

RANK = Param("rank", 128, "projected key rows (segments of keys pooled into one)", lo=1, hi=1 << 20,
             unit="rows")


def effective_rank(spec: AttentionSpec) -> int:
    return min(spec.rank, spec.kv_seq)


@functools.lru_cache(maxsize=32)
def _pooling(rank: int, kv_seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    bounds = torch.div(torch.arange(rank + 1) * kv_seq, rank, rounding_mode="floor")
    lengths = bounds[1:] - bounds[:-1]
    segment = torch.bucketize(torch.arange(kv_seq), bounds[1:], right=True)
    proj = torch.zeros(rank, kv_seq, dtype=torch.float64)
    proj[segment, torch.arange(kv_seq)] = 1.0 / lengths[segment].double()
    return proj, lengths


def pooling(spec: AttentionSpec, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (rank x kv_seq) projection, log segment lengths, and each key's segment."""
    proj, lengths = _pooling(effective_rank(spec), spec.kv_seq)
    segment = proj.argmax(0)
    return (proj.to(like.device, like.dtype), lengths.to(like.device, like.dtype).log(),
            segment.to(like.device))


def _projected_weights(q, k, spec: AttentionSpec):
    proj, log_len, _ = pooling(spec, q)
    k_r = repeat_kv(proj @ k, spec.groups)  # (B, H, rank, D)
    scores = q @ k_r.transpose(-1, -2) / math.sqrt(q.shape[-1]) + log_len
    return scores.softmax(-1), proj  # (B, H, S, rank)


def run(q, k, v, spec: AttentionSpec):
    w, proj = _projected_weights(q, k, spec)
    return w @ repeat_kv(proj @ v, spec.groups)


def weights(q, k, spec: AttentionSpec, rows=None):
    """Each segment's weight spread evenly over the keys it pools (rows still sum to 1)."""
    q, _ = select_rows(q, rows)
    w, _ = _projected_weights(q, k, spec)
    _, log_len, segment = pooling(spec, q)
    return w[..., segment] / log_len.exp()[segment]


def flops(spec: AttentionSpec) -> int:
    r = effective_rank(spec)
    projection = 2 * 2 * spec.batch * spec.kv_heads * r * spec.kv_seq * spec.head_dim
    return projection + 4 * spec.batch * spec.heads * spec.head_dim * spec.seq * r


def extra_bytes(spec: AttentionSpec) -> int:
    r = effective_rank(spec)
    return (2 * spec.batch * spec.heads * spec.seq * r + 2 * spec.batch * spec.heads * r * spec.head_dim
            + r * spec.kv_seq) * spec.dtype_bytes


def unsupported(spec: AttentionSpec, device: str) -> list[str]:
    if spec.causal:
        return ["linformer: pools keys across positions, so it cannot be causal; untick causal"]
    return []


CANNOT = {"decode": "linformer: pools keys across positions, so every new token changes the pooled "
                     "keys: there is no cache to decode against"}


VARIANT = register(Variant(
    name="linformer",
    title="Linformer (low rank)",
    summary="Keys and values pooled along the sequence to `rank` rows: O(S*r*D); exact when "
            "rank reaches kv_seq. Not causal.",
    exact=False,
    params=(RANK,),
    run=run,
    weights=weights,
    pairs=lambda spec: spec.seq * effective_rank(spec),
    flops=flops,
    extra_bytes=extra_bytes,
    color="#3b82f6",
    cannot=CANNOT,
    unsupported=unsupported,
))
