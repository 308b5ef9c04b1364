"""block_sparse: BigBird-style blocks. A query block sees its neighbouring key blocks (local),
the first `n_global` blocks (global, which also see everything), and `n_random` random blocks.
Causal masks apply on top, token by token."""
from __future__ import annotations

import functools
import math

import torch

from attn.masks import Mask, generate_block_layout_mask, sum_clamped
from attn.params import Param
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.masked import masked_attention, masked_kernel
from attn.variants.registry import Variant, register
from attn.variants.softmax import RUN_GATHERED_KEYS, RUN_ROWS, softmax_weights

BLOCK = Param("block", 64, "tokens per block", lo=1, hi=4096, unit="tokens")
N_GLOBAL = Param("n_global", 1, "global blocks at the start, which see and are seen by every block",
                 lo=0, hi=64, unit="blocks")
N_RANDOM = Param("n_random", 1, "random key blocks per query block", lo=0, hi=64, unit="blocks")


# the largest layout attn builds, in (query block, key block) cells: 8192 x 8192 blocks, 64 MiB
# of booleans, about a second to draw on 2 cores. Past it a spec is refused with the block size
# that would fit, rather than hang drawing the layout.
MAX_LAYOUT_CELLS = 1 << 26
_SLAB_ROWS = 1024  # query blocks drawn at a time: the random scores are a slab x key blocks


def layout_blocks(spec: AttentionSpec) -> tuple[int, int]:
    """(query blocks, key blocks) of the spec's layout, without building it."""
    first = spec.position_offset // spec.block
    last = (spec.position_offset + spec.seq - 1) // spec.block
    return last - first + 1, -(-spec.kv_seq // spec.block)


def layout_too_large(spec: AttentionSpec) -> str | None:
    """Why the layout is too large to build, with the block size that would fit; None if not."""
    n_qb, n_kb = layout_blocks(spec)
    if n_qb * n_kb <= MAX_LAYOUT_CELLS:
        return None
    scale = math.isqrt(-(-n_qb * n_kb // MAX_LAYOUT_CELLS)) + 1
    return (f"block_sparse: a layout of {n_qb:,} x {n_kb:,} blocks is past the "
            f"{MAX_LAYOUT_CELLS:,} blocks attn builds; use block >= {spec.block * scale:,} "
            f"or fewer tokens")


def _hash_scores(qb: torch.Tensor, kb: torch.Tensor, seed: int) -> torch.Tensor:
    """A pseudo-random 31-bit score for each (query block, key block) pair, from the seed alone
    (int64 arithmetic that stays below 2^62: 31-bit values times 31-bit odd constants)."""
    mask = (1 << 31) - 1
    h = (qb * 0x5BD1E995 + kb * 0x1B873593 + (seed % 0x7FFFFFFF) * 0x27D4EB2F) & mask
    for _ in range(2):
        h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & mask
        h = ((h ^ (h >> 13)) * 0x297A2D39) & mask
    return h ^ (h >> 16)


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
        # each query block draws n_random blocks uniformly among those it could still see: the
        # candidates with the smallest random scores. A score is a hash of (seed, query block,
        # key block), so a block's row of the layout is the same in every spec that has it (a
        # decode step's one query block sees what that block saw in the whole forward), and the
        # draw is vectorised (a loop of randperm per row took 1.5 s at 1024 query blocks)
        for lo in range(0, layout.shape[0], _SLAB_ROWS):
            rows = layout[lo:lo + _SLAB_ROWS]
            candidates = ~rows & ((kb <= qb[lo:lo + _SLAB_ROWS]) if causal else True)
            scores = _hash_scores(qb[lo:lo + _SLAB_ROWS], kb, seed).masked_fill_(~candidates, 1 << 32)
            pick = scores.topk(min(n_random, n_kb), dim=1, largest=False).indices
            rows |= torch.zeros_like(rows).scatter_(1, pick, candidates.gather(1, pick))
    return layout, first


def block_layout(spec: AttentionSpec) -> tuple[torch.Tensor, int]:
    """(query blocks x key blocks) booleans, and the index of the first query block.

    Query blocks are counted on the key axis (by position), so they line up with key blocks.
    """
    too_large = layout_too_large(spec)
    if too_large:
        raise ValueError(too_large)
    return _layout(spec.seq, spec.kv_seq, spec.position_offset, spec.block, spec.n_global,
                   spec.n_random, spec.seed, spec.causal)


def block_sparse_mask(spec: AttentionSpec, device: torch.device | str | None = None) -> Mask:
    """The layout's mask. Its function compares the layout with query and key indices on
    `device` (the tensors' device: FlexAttention's block mask is built from CUDA indices), so
    the layout goes there; `keys_for` reads the layout where it was drawn, on the CPU."""
    layout, first = block_layout(spec)
    off, bs = spec.position_offset, spec.block

    def keys_for(lo: int, hi: int) -> torch.Tensor:
        rows = layout[(lo + off) // bs - first:(hi - 1 + off) // bs - first + 1]
        blocks = rows.any(0).nonzero().flatten()
        keys = (blocks[:, None] * bs + torch.arange(bs)[None, :]).flatten()
        stop = min(spec.kv_seq, hi + off) if spec.causal else spec.kv_seq
        return keys[keys < stop]

    table = layout if device is None else layout.to(device)
    return Mask(generate_block_layout_mask(table, bs, first, off, spec.causal), keys_for,
                "block_sparse")


def block_sparse_pairs(spec: AttentionSpec) -> int:
    """Pairs of the layout, counted block by block in closed form (no seq x kv_seq matrix)."""
    layout, first = block_layout(spec)
    off, bs = spec.position_offset, spec.block
    # only the cells the layout keeps: a few per query block, not query blocks x key blocks
    qb, kb = layout.nonzero().unbind(1)
    qb = qb + first
    q_start = torch.clamp(qb * bs, min=off)
    n_q = torch.clamp((qb + 1) * bs, max=off + spec.seq) - q_start
    k_start = kb * bs
    n_k = torch.clamp((kb + 1) * bs, max=spec.kv_seq) - k_start
    if spec.causal:
        per_cell = sum_clamped(q_start - k_start + 1, n_q, n_k)
    else:
        per_cell = n_q * n_k
    return int(per_cell.sum())


def weights(q, k, spec: AttentionSpec, rows=None):
    return softmax_weights(q, k, spec, rows, block_sparse_mask(spec, q.device).fn)


def run(q, k, v, spec: AttentionSpec):
    # chunks of one position block each (query i sits at position i + offset), so that the
    # chunks of a regular layout have alike keys and run as one call
    return masked_attention(q, k, v, spec, block_sparse_mask(spec, q.device), "block_sparse", spec.block,
                            phase=-spec.position_offset)


def extra_bytes(spec: AttentionSpec) -> int:
    # the CPU kernel: for a run of query blocks (one batch item), the two partial outputs of
    # its local band and of its other blocks before they are merged into place (one output
    # with GQA), the keys and values gathered for it, and a block's bias
    layout, _ = block_layout(spec)
    widest = min(int(layout.sum(1).max()) * spec.block, spec.kv_seq)
    rows = min(spec.seq, RUN_ROWS)
    gathered = max(widest, min(RUN_GATHERED_KEYS, layout.shape[0] * widest))
    # and the layout itself, a byte a cell, with (while it is drawn) a slab of float32 random
    # scores, their candidate mask and the picks: about 13 bytes a cell of the slab
    n_qb, n_kb = layout.shape
    drawing = n_qb * n_kb + (min(n_qb, _SLAB_ROWS) * n_kb * 13 if spec.n_random else 0)
    return drawing + (2 * spec.heads * rows * spec.head_dim
                      + 2 * spec.kv_heads * gathered * spec.head_dim
                      + min(spec.block, spec.seq) * widest) * spec.dtype_bytes


def decode_keys(spec: AttentionSpec) -> int:
    """The cached keys a decode step's new tokens can see: those of the blocks their layout
    rows keep (the kernel gathers just these)."""
    return int(block_sparse_mask(spec).keys_for(0, spec.seq).numel())


def unsupported(spec: AttentionSpec, device: str) -> list[str]:
    too_large = layout_too_large(spec)
    return [too_large] if too_large else []


VARIANT = register(Variant(
    name="block_sparse",
    title="Block sparse (BigBird)",
    summary="Local blocks + global blocks + random blocks of `block` tokens: exact on its "
            "layout, linear in sequence length for a fixed layout width.",
    exact=True,
    params=(BLOCK, N_GLOBAL, N_RANDOM),
    run=run,
    weights=weights,
    pairs=block_sparse_pairs,
    flops=lambda spec: dense.useful_flops(spec, block_sparse_pairs(spec)),
    extra_bytes=extra_bytes,
    color="#06b6d4",
    kernel=masked_kernel,
    recomputes=lambda spec: True,  # the CPU flash kernel and FlexAttention recompute the scores
    decode_keys=decode_keys,
    fused_on_cpu=True,
    unsupported=unsupported,
    mask=block_sparse_mask,
))
