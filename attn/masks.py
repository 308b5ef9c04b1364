"""Attention masks as plain functions of (q_idx, kv_idx), and exact counts of their pairs.

One mask function serves four readers that must never disagree: the CPU kernel, the
FlexAttention block mask on CUDA, the cost model's pair count, and the drawing of the pattern.
A mask function takes integer tensors that broadcast against each other and returns a boolean
tensor: True where the query may attend to the key. Only tensor ops, so FlexAttention can trace it.

Positions: query i sits at key position `i + offset` (see AttentionSpec.position_offset), so a
causal query sees keys 0..i+offset. With offset < 0 the first queries see no key at all; their
output is zero, as in flash-attention's bottom-right causal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from attn.spec import AttentionSpec

MaskFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# -- generators -------------------------------------------------------------------------------
def generate_causal(offset: int) -> MaskFn:
    def causal(q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return kv_idx <= q_idx + offset
    return causal


def generate_sliding_window(window: int, offset: int, causal: bool) -> MaskFn:
    """Causal: the last `window` keys up to the query's position, itself included.
    Not causal: keys less than `window` positions away on either side."""
    def sliding_window(q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        distance = q_idx + offset - kv_idx
        if causal:
            return (distance >= 0) & (distance < window)
        return distance.abs() < window
    return sliding_window


def generate_block_layout_mask(layout: torch.Tensor, block: int, first_q_block: int,
                               offset: int, causal: bool) -> MaskFn:
    """Tokens see each other where their blocks do in `layout` (query blocks x key blocks)."""
    def block_sparse(q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        pos = q_idx + offset
        allowed = layout[pos // block - first_q_block, kv_idx // block]
        if causal:
            allowed = allowed & (kv_idx <= pos)
        return allowed
    return block_sparse


# -- a mask together with what a blockwise kernel needs to know about it -----------------------
@dataclass(frozen=True)
class Mask:
    """A mask function and, for a run of queries, which keys can be visible at all.

    `keys_for(lo, hi)` returns the key indices that queries lo..hi-1 may see (a superset is
    fine; the function decides per pair). Kernels gather just those keys, which is where the
    savings of sliding windows and block sparsity come from.
    """

    fn: MaskFn
    keys_for: Callable[[int, int], torch.Tensor]
    name: str


def materialise(fn: MaskFn, seq: int, kv_seq: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The boolean (rows x kv_seq) matrix of a mask function. For drawings and tests."""
    q = torch.arange(seq) if rows is None else rows
    return fn(q[:, None], torch.arange(kv_seq)[None, :])


def causal_key_range(spec: AttentionSpec, lo: int, hi: int) -> tuple[int, int]:
    """Keys [start, stop) that a causal run of queries lo..hi-1 can reach."""
    return 0, max(0, min(spec.kv_seq, hi - 1 + spec.position_offset + 1))


# -- exact pair counts --------------------------------------------------------------------------
def _prefix_of_clamp(x, hi):
    """F(x) = sum of clamp(y, 0, hi) over integers y < x; F(x) = 0 for x <= 0."""
    if isinstance(x, int) and isinstance(hi, int):
        x = max(x, 0)
        inside = min(x, hi + 1)
    else:
        x = x.clamp(min=0)
        inside = torch.minimum(x, hi + 1)
    return inside * (inside - 1) // 2 + (x - inside) * hi


def sum_clamped(start, count, hi):
    """Sum of clamp(start + t, 0, hi) for t in 0..count-1.

    On Python ints the sum is exact at any size (the cost of a spec of 10^18 tokens has ~10^36
    pairs, past int64); on tensors it is elementwise in int64, for per-block counts that stay small.
    """
    if all(isinstance(a, int) for a in (start, count, hi)):
        return _prefix_of_clamp(start + count, hi) - _prefix_of_clamp(start, hi)
    start, count, hi = (torch.as_tensor(a, dtype=torch.int64) for a in (start, count, hi))
    return _prefix_of_clamp(start + count, hi) - _prefix_of_clamp(start, hi)


def causal_pairs(spec: AttentionSpec) -> int:
    """Visible pairs of a full or causal mask, per batch item and head."""
    if not spec.causal:
        return spec.seq * spec.kv_seq
    return int(sum_clamped(spec.position_offset + 1, spec.seq, spec.kv_seq))


def sliding_window_pairs(spec: AttentionSpec) -> int:
    off, w, n, kv = spec.position_offset, spec.window, spec.seq, spec.kv_seq
    if spec.causal:
        # keys in (pos - w, pos]: count = clamp(pos + 1) - clamp(pos + 1 - w)
        return int(sum_clamped(off + 1, n, kv) - sum_clamped(off + 1 - w, n, kv))
    # keys in (pos - w, pos + w)
    return int(sum_clamped(off + w, n, kv) - sum_clamped(off - w + 1, n, kv))


def pooled_mask(fn: MaskFn, seq: int, kv_seq: int, q_edges: list[int], k_edges: list[int],
                max_rows: int = 4096) -> torch.Tensor:
    """Share of visible pairs in each (query block, key block) cell, for drawing the pattern.

    Evaluated a slab of query rows at a time, so memory stays O(rows * kv_seq).
    """
    k_edges_t = torch.as_tensor(k_edges)
    out = torch.zeros(len(q_edges) - 1, len(k_edges) - 1)
    keys = torch.arange(kv_seq)
    widths = (k_edges_t[1:] - k_edges_t[:-1]).double()
    for i, (lo, hi) in enumerate(zip(q_edges[:-1], q_edges[1:])):
        total = torch.zeros(len(k_edges) - 1, dtype=torch.float64)
        for start in range(lo, hi, max_rows):
            rows = torch.arange(start, min(hi, start + max_rows))
            seen = fn(rows[:, None], keys[None, :]).sum(0, dtype=torch.float64)
            cs = torch.cat([torch.zeros(1, dtype=torch.float64), seen.cumsum(0)])
            total += cs[k_edges_t[1:]] - cs[k_edges_t[:-1]]
        out[i] = (total / (widths * (hi - lo))).float()
    return out

