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
from attn.variants.registry import SizeLimit, Variant, register
from attn.variants.softmax import RUN_GATHERED_KEYS, RUN_ROWS, softmax_weights

BLOCK = Param("block", 64, "tokens per block", lo=1, hi=4096, unit="tokens")
N_GLOBAL = Param("n_global", 1, "global blocks at the start, which see and are seen by every block",
                 lo=0, hi=64, unit="blocks")
N_RANDOM = Param("n_random", 1, "random key blocks per query block", lo=0, hi=64, unit="blocks")


# the largest layout attn builds, in (query block, key block) cells: 8192 x 8192 blocks, 64 MiB
# of booleans, about a second to draw on 2 cores. Past it a spec is refused with the block size
# that would fit, rather than hang drawing the layout.
MAX_LAYOUT_CELLS = 1 << 26


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
    h = ((qb & mask) * 0x5BD1E995 + (kb & mask) * 0x1B873593 + (seed % 0x7FFFFFFF) * 0x27D4EB2F) & mask
    for _ in range(2):
        h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & mask
        h = ((h ^ (h >> 13)) * 0x297A2D39) & mask
    return h ^ (h >> 16)


def _free_blocks(qb: torch.Tensor, n_g: int, n_kb: int, full: int, causal: bool
                 ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """For each query block: how many key blocks the random draw picks from, the local blocks
    it must skip (ascending), and the end of the range it draws in.

    The draw's candidates are the whole key blocks (a partial last block is never drawn, so
    that a row's pairs do not depend on the draw: the cost is a closed form) up to the row's
    own block under a causal mask, less the global blocks and the local band already held.
    """
    end = torch.clamp(torch.clamp(qb + 1, max=full), min=0) if causal else torch.full_like(qb, full)
    skips = [qb + d for d in (-1, 0, 1)]
    holes = [torch.where((kb >= n_g) & (kb < end), kb, -1) for kb in skips]
    free = end - torch.minimum(end, torch.tensor(n_g)) - sum((h >= 0).long() for h in holes)
    return free.clamp(min=0), holes, end


def _random_blocks(qb: torch.Tensor, n_g: int, n_kb: int, full: int, causal: bool,
                   n_random: int, seed: int) -> torch.Tensor:
    """(query blocks x n_random) key blocks drawn at random, -1 where a row draws fewer.

    Floyd's algorithm, a row's draws uniform among its candidates without replacement, run on
    every row at once: n_random steps of a hash of (seed, query block, step), so the work is
    query blocks x n_random^2 whatever the number of key blocks (scoring every key block took
    17 s for one decode row at 4G tokens of context). A row depends only on its query block
    and its candidates, so a decode step's one query block sees what that block saw in the
    whole forward pass.
    """
    free, holes, _ = _free_blocks(qb, n_g, n_kb, full, causal)
    drawn = torch.clamp(free, max=n_random)
    picks = torch.full((qb.shape[0], n_random), -1, dtype=torch.int64)
    for i in range(n_random):
        j = free - drawn + i  # Floyd's j runs over the last `drawn` candidate indices
        active = i < drawn
        # 62 random bits (two 31-bit hashes), so that rows of more than 2^31 candidates draw
        # from all of them
        bits = (_hash_scores(qb, j, seed) << 31) | _hash_scores(qb, j ^ 0x55555555, seed + 1)
        t = bits % (j + 1).clamp(min=1)
        t = torch.where((picks == t[:, None]).any(1), j, t)
        picks[:, i] = torch.where(active, t, -1)
    # candidate index -> key block: past the global blocks, then past each held local block
    blocks = picks + n_g
    for hole in holes:
        blocks = blocks + ((hole >= 0)[:, None] & (blocks >= hole[:, None]))
    return torch.where(picks >= 0, blocks, -1)


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
        drawn = _random_blocks(qb[:, 0], min(n_global, n_kb), n_kb, _full_key_blocks(kv_seq, block),
                               causal, n_random, seed)
        # rows that draw fewer point their empty slots at a spare last column (static shapes:
        # no nonzero, so the layout is also drawn under torch's FakeTensorMode)
        picked = torch.zeros(layout.shape[0], n_kb + 1, dtype=torch.bool)
        picked.scatter_(1, torch.where(drawn >= 0, drawn, n_kb), True)
        layout |= picked[:, :n_kb]
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


def _full_key_blocks(kv_seq: int, block: int) -> int:
    """Key blocks of a whole `block` keys: the ones random picks come from."""
    return kv_seq // block


def row_counts(spec: AttentionSpec, qb: int) -> tuple[int, int]:
    """(pairs, key blocks) of query block qb's row of the layout, on Python ints.

    Neither depends on which blocks the random draw picks (they are whole blocks, wholly visible
    even under a causal mask, see _random_blocks), so the layout is never drawn for them.
    """
    off, bs, kv, causal = spec.position_offset, spec.block, spec.kv_seq, spec.causal
    n_kb = -(-kv // bs)
    n_g, full = min(spec.n_global, n_kb), _full_key_blocks(kv, bs)
    q_start = max(qb * bs, off)
    n_q = min((qb + 1) * bs, off + spec.seq) - q_start
    if 0 <= qb < n_g:  # a global row sees every key
        return (sum_clamped(q_start + 1, n_q, kv) if causal else n_q * kv), n_kb

    def block_pairs(kb: int) -> int:
        k_start = kb * bs
        n_k = min(k_start + bs, kv) - k_start
        return sum_clamped(q_start - k_start + 1, n_q, n_k) if causal else n_q * n_k

    # the global blocks lie wholly before a non-global row (a row at negative positions, under a
    # causal mask, sees no key at all); then the local band, less what the global blocks hold
    pairs = n_q * min(n_g * bs, kv) if qb >= 0 or not causal else 0
    local = [kb for kb in (qb - 1, qb, qb + 1) if n_g <= kb < n_kb]
    pairs += sum(block_pairs(kb) for kb in local)
    # random blocks: n_random of the whole blocks not held yet (up to the row's own block under
    # a causal mask), each seen whole
    end = max(min(qb + 1, full), 0) if causal else full
    free = end - min(end, n_g) - sum(1 for kb in local if kb < end)
    drawn = min(max(free, 0), spec.n_random)
    return pairs + drawn * n_q * bs, n_g + len(local) + drawn


def _segments(spec: AttentionSpec) -> list[tuple[int, int]]:
    """Runs [a, b) of query blocks over which a row's pairs and blocks are linear in qb.

    A row's counts change shape only where qb meets the layout's landmarks (the first and last
    query block, block 0, the global blocks, the last and the last whole key block, and where
    the random draw has enough candidates), give or take the local band; between them a row is
    the one before it shifted by a block. Three rows either side of each landmark are their own
    runs, so the sum is a few dozen rows at any length.
    """
    first = spec.position_offset // spec.block
    stop = (spec.position_offset + spec.seq - 1) // spec.block + 1
    n_kb = -(-spec.kv_seq // spec.block)
    n_g = min(spec.n_global, n_kb)
    landmarks = (0, n_g, n_kb, _full_key_blocks(spec.kv_seq, spec.block), n_g + spec.n_random,
                 first + 1, stop - 1)
    cuts = sorted({first, stop} | {min(max(m + d, first), stop) for m in landmarks for d in range(-3, 5)})
    return list(zip(cuts, cuts[1:]))


def layout_totals(spec: AttentionSpec) -> tuple[int, int]:
    """(pairs, the widest row's key blocks) of the whole layout: a linear row count summed over
    each run in closed form, exact at any length (a cost at 10^18 tokens answers in
    milliseconds; drawing the layout took 2 s at 8192 x 8192 blocks)."""
    pairs, widest = 0, 0
    for a, b in _segments(spec):
        (pa, wa), (pb, wb) = row_counts(spec, a), row_counts(spec, b - 1)
        pairs += (pa + pb) * (b - a) // 2
        widest = max(widest, wa, wb)
    return pairs, widest


def block_sparse_pairs(spec: AttentionSpec) -> int:
    """Pairs of the layout, in closed form (no layout, no matrix)."""
    return layout_totals(spec)[0]


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
    n_qb, n_kb = layout_blocks(spec)
    widest = min(layout_totals(spec)[1] * spec.block, spec.kv_seq)
    rows = min(spec.seq, RUN_ROWS)
    gathered = max(widest, min(RUN_GATHERED_KEYS, n_qb * widest))
    # and the layout itself, a byte a cell, with (while it is drawn) a few int64 vectors of
    # n_random picks a query block
    drawing = n_qb * n_kb + n_qb * spec.n_random * 8 * 4
    return drawing + (2 * spec.heads * rows * spec.head_dim
                      + 2 * spec.kv_heads * gathered * spec.head_dim
                      + min(spec.block, spec.seq) * widest) * spec.dtype_bytes


# a decode step's key count is found on int64 tensors: block indices times the block size must
# stay below 2^63, and its rows' draws are rows x n_random^2 steps
_DECODE_KEYS_LIMIT = 1 << 62
_DECODE_DRAWS_LIMIT = 1 << 22


def decode_keys(spec: AttentionSpec) -> int:
    """The cached keys a decode step's new tokens can see: those of the blocks their layout
    rows keep (the kernel gathers just these), found from the rows alone: a decode step at 4G
    tokens of context drew a row of 67M key blocks in 17 s."""
    bs, kv = spec.block, spec.kv_seq
    n_qb, n_kb = layout_blocks(spec)
    if kv >= _DECODE_KEYS_LIMIT or n_qb * max(spec.n_random, 1) ** 2 > _DECODE_DRAWS_LIMIT:
        raise ValueError(f"block_sparse: a decode step of {spec.seq:,} new tokens on {kv:,} cached "
                         f"keys is past what attn counts; use fewer new tokens or a larger block")
    n_g = min(spec.n_global, n_kb)
    qb = torch.arange(n_qb, dtype=torch.int64) + spec.position_offset // bs
    stop = min(kv, spec.position_offset + spec.seq) if spec.causal else kv
    if bool(((qb >= 0) & (qb < n_g)).any()):
        return stop  # a global row keeps every block
    held = [torch.arange(n_g), *(qb + d for d in (-1, 0, 1))]
    if spec.n_random:
        held.append(_random_blocks(qb, n_g, n_kb, _full_key_blocks(kv, bs), spec.causal,
                                   spec.n_random, spec.seed).flatten())
    blocks = torch.cat(held).unique()
    blocks = blocks[(blocks >= 0) & (blocks < n_kb)]
    return int((torch.clamp((blocks + 1) * bs, max=stop) - blocks * bs).clamp(min=0).sum())


def unsupported(spec: AttentionSpec, device: str) -> list[str]:
    too_large = layout_too_large(spec)
    return [SizeLimit(too_large)] if too_large else []


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
