"""block_sparse: BigBird-style blocks. A query block sees its neighbouring key blocks (local),
the first `n_global` blocks (global, which also see everything), and `n_random` random blocks.
Causal masks apply on top, token by token."""
from __future__ import annotations

import functools

import torch

from attn.masks import Mask, generate_block_layout_mask, sum_clamped
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.registry import Variant, register
from attn.variants.softmax import (RUN_GATHERED_KEYS, RUN_ROWS, masked_attention,
                                   softmax_weights)


@functools.lru_cache(maxsize=64)
def _layout(seq: int, kv_seq: int, offset: int, block: int, n_global: int, n_random: int,
            seed: int, causal: bool) -> tuple[torch.Tensor, int]:
    first = offset // block
    last = (offset + seq - 1) // block
    n_kb = -(-kv_seq // block)
    qb = torch.arange(first, last + 1)[:, None]
    kb = torch.arange(n_kb)[None, :]
    layout = ((qb - kb).abs() <= 1) | (kb < n_global) | ((qb >= 0) & (qb < n_global))
    if n_random:
        reachable = (kb <= qb) if causal else torch.ones_like(layout)
        gen = torch.Generator().manual_seed(seed)
        for i in range(layout.shape[0]):
            candidates = (reachable[i] & ~layout[i]).nonzero().flatten()
            pick = candidates[torch.randperm(candidates.numel(), generator=gen)[:n_random]]
            layout[i, pick] = True
    return layout, first


def block_layout(spec: AttentionSpec) -> tuple[torch.Tensor, int]:
    """(query blocks x key blocks) booleans, and the index of the first query block.

    Query blocks are counted on the key axis (by position), so they line up with key blocks.
    """
    return _layout(spec.seq, spec.kv_seq, spec.position_offset, spec.block, spec.n_global,
                   spec.n_random, spec.seed, spec.causal)


def block_sparse_mask(spec: AttentionSpec) -> Mask:
    layout, first = block_layout(spec)
    off, bs = spec.position_offset, spec.block

    def keys_for(lo: int, hi: int) -> torch.Tensor:
        rows = layout[(lo + off) // bs - first:(hi - 1 + off) // bs - first + 1]
        blocks = rows.any(0).nonzero().flatten()
        keys = (blocks[:, None] * bs + torch.arange(bs)[None, :]).flatten()
        stop = min(spec.kv_seq, hi + off) if spec.causal else spec.kv_seq
        return keys[keys < stop]

    return Mask(generate_block_layout_mask(layout, bs, first, off, spec.causal), keys_for,
                "block_sparse")


def block_sparse_pairs(spec: AttentionSpec) -> int:
    """Pairs of the layout, counted block by block in closed form (no seq x kv_seq matrix)."""
    layout, first = block_layout(spec)
    off, bs = spec.position_offset, spec.block
    qb = torch.arange(first, first + layout.shape[0])[:, None]
    kb = torch.arange(layout.shape[1])[None, :]
    q_start = torch.clamp(qb * bs, min=off)
    n_q = torch.clamp((qb + 1) * bs, max=off + spec.seq) - q_start
    k_start = kb * bs
    n_k = torch.clamp((kb + 1) * bs, max=spec.kv_seq) - k_start
    if spec.causal:
        per_cell = sum_clamped(q_start - k_start + 1, n_q, n_k)
    else:
        per_cell = n_q * n_k
    return int(per_cell[layout].sum())


def weights(q, k, spec: AttentionSpec, rows=None):
    return softmax_weights(q, k, spec, rows, block_sparse_mask(spec).fn)


def run(q, k, v, spec: AttentionSpec):
    # chunks of one position block each (query i sits at position i + offset), so that the
    # chunks of a regular layout have alike keys and run as one call
    return masked_attention(q, k, v, spec, block_sparse_mask(spec), "block_sparse", spec.block,
                            phase=-spec.position_offset)


def extra_bytes(spec: AttentionSpec) -> int:
    # the CPU kernel: for a run of query blocks (one batch item), the two partial outputs of
    # its local band and of its other blocks before they are merged into place (one output
    # with GQA), the keys and values gathered for it, and a block's bias
    layout, _ = block_layout(spec)
    widest = min(int(layout.sum(1).max()) * spec.block, spec.kv_seq)
    rows = min(spec.seq, RUN_ROWS)
    gathered = max(widest, min(RUN_GATHERED_KEYS, layout.shape[0] * widest))
    return (2 * spec.heads * rows * spec.head_dim + 2 * spec.kv_heads * gathered * spec.head_dim
            + min(spec.block, spec.seq) * widest) * spec.dtype_bytes


VARIANT = register(Variant(
    name="block_sparse",
    title="Block sparse (BigBird)",
    summary="Local blocks + global blocks + random blocks of `block` tokens: exact on its "
            "layout, linear in sequence length for a fixed layout width.",
    exact=True,
    params=("block", "n_global", "n_random"),
    run=run,
    weights=weights,
    pairs=block_sparse_pairs,
    flops=lambda spec: dense.useful_flops(spec, block_sparse_pairs(spec)),
    extra_bytes=extra_bytes,
    mask=block_sparse_mask,
))
