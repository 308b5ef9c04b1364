"""Attention maps at any length: pooled weight matrices and per-head statistics.

A 32k x 32k weight matrix is 4 GiB in float32 and no screen shows it, so a map is at most
`max_size` x `max_size` cells. Each cell covers a run of queries and a run of keys (near-equal
runs: boundaries at floor(i * n / cells)), and the weights are visited a block of query rows at a
time, one batch item and one head, so extra memory stays O(rows_block * kv_seq).

Mean pooling. A cell is the mean over its query rows of the total weight on its key run:
    cell[r, c] = 1/|Q_r| * sum_{i in Q_r} sum_{j in K_c} w[i, j]
(a mean over queries, a sum over keys). Every pooled row of a softmax variant is then still a
distribution: it sums to 1 when its queries see any key, and the picture reads like the exact
one ("this query run puts 30% of its attention on keys 0-31"). Variants whose rows are not
normalised (sigmoid, relu) are drawn as they are, never rescaled; each map row's total weight
comes with the map (`row_sums`). A plain mean over the cell's pairs would shrink with the
width of the key run and rows would no longer sum to 1.
Max pooling: the largest single weight in the cell, which shows thin lines (a sink, a diagonal)
that the mean washes out.
Masked pairs weigh 0, so a cell made only of masked pairs is exactly 0.

Head statistics summarise every row of a head without drawing it; see `HeadStats`
(attn.head_statistics). They are gathered on the same walk as the map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from attn import variants
from attn.cost import io_bytes
from attn.device import free_bytes, resolve_device
from attn.head_statistics import HeadStats, StatSums, block_sums
from attn.inputs import random_qkv
from attn.sources import InputSource, make_inputs
from attn.memory import DoesNotFit
from attn.readable import nbytes, si
from attn.spec import AttentionSpec
from attn.variants.registry import Variant

Tensor = torch.Tensor

REDUCES = ("mean", "max")
# query rows per block are chosen so that one (rows x kv_seq) slab has at most this many
# elements: 4 MiB in float32. A variant's `weights` holds a few such slabs at once (scores,
# masked scores, softmax, the int64 mask arithmetic), so the peak stays a few tens of MiB at any
# length, while a block is still large enough that per-block overhead is small (32 rows at 32k)
SLAB_ELEMENTS = 1 << 20


# -- results ----------------------------------------------------------------------------------
@dataclass
class PooledMap:
    """Attention weights of one batch item and head, pooled to at most max_size x max_size.

    Row r covers queries q_edges[r] .. q_edges[r+1]-1; column c covers keys
    k_edges[c] .. k_edges[c+1]-1. `exact` is True when every cell is one (query, key) pair.
    """

    values: np.ndarray  # float32 (rows, cols)
    q_edges: np.ndarray  # int64 (rows + 1,)
    k_edges: np.ndarray  # int64 (cols + 1,)
    exact: bool
    reduce: str
    variant: str
    head: int
    kv_head: int
    batch: int
    spec: dict
    # each map row's total weight, pooled over its query rows as the cells are (the mean of the
    # rows' sums, or the largest): 1 for softmax rows that see a key, anything >= 0 for a
    # variant whose rows are not normalised (sigmoid, relu), whose cells are drawn as they are
    row_sums: np.ndarray | None = None

    @property
    def q_start(self) -> np.ndarray:
        return self.q_edges[:-1]

    @property
    def q_stop(self) -> np.ndarray:
        """Exclusive: row r covers queries q_start[r] .. q_stop[r]-1."""
        return self.q_edges[1:]

    @property
    def k_start(self) -> np.ndarray:
        return self.k_edges[:-1]

    @property
    def k_stop(self) -> np.ndarray:
        return self.k_edges[1:]

    def cell_label(self, row: int, col: int) -> str:
        """What a hover says: 'queries 4096-4127 x keys 0-31' (inclusive ranges)."""
        return (f"{_run(self.q_edges, row, 'query', 'queries')} x "
                f"{_run(self.k_edges, col, 'key', 'keys')}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": self.values.tolist(),
            "q_edges": self.q_edges.tolist(),
            "k_edges": self.k_edges.tolist(),
            "exact": self.exact,
            "reduce": self.reduce,
            "variant": self.variant,
            "head": self.head,
            "kv_head": self.kv_head,
            "batch": self.batch,
            "spec": self.spec,
            "row_sums": None if self.row_sums is None else self.row_sums.tolist(),
        }


def _run(edges: np.ndarray, i: int, one: str, many: str) -> str:
    lo, hi = int(edges[i]), int(edges[i + 1]) - 1
    return f"{one} {lo}" if lo == hi else f"{many} {lo}-{hi}"


# -- statistics of explicit weights -----------------------------------------------------------

def stats_from_weights(w: Tensor | np.ndarray, positions: Tensor | np.ndarray | None = None,
                       visible: Tensor | np.ndarray | None = None, head: int = 0) -> HeadStats:
    """HeadStats of an explicit (rows x kv) weight matrix, e.g. a hand-made one.

    positions: each row's position on the key axis (default 0, 1, 2, ...). visible: keys each
    row may see (default: its keys of nonzero weight). Rows are taken as given and need not sum
    to 1 (entropy and distance normalise each row for themselves; see HeadStats).
    """
    w = torch.as_tensor(w)
    if not w.is_floating_point():
        w = w.double()
    if w.dim() != 2:
        raise ValueError(f"weights must be a (rows x keys) matrix, got shape {tuple(w.shape)}")
    rows = w.shape[0]
    positions = torch.arange(rows) if positions is None else torch.as_tensor(positions)
    if positions.shape != (rows,):
        raise ValueError(f"positions must have one entry per row ({rows}), got {tuple(positions.shape)}")
    visible = (w > 0).sum(-1) if visible is None else torch.as_tensor(visible)
    sums = block_sums(w, positions.long().to(w.device), visible.to(w.device))
    return sums.finish(head=head, kv_head=head, batch=0)


# -- the blockwise walk over one head's weights ------------------------------------------------
def _check(q: Tensor, k: Tensor, spec: AttentionSpec, variant: Variant, batch: int,
           head: int | None) -> None:
    if tuple(q.shape[:3]) != (spec.batch, spec.heads, spec.seq):
        raise ValueError(f"q has shape {tuple(q.shape)}, but the spec says "
                         f"(batch {spec.batch}, heads {spec.heads}, seq {spec.seq}, ...)")
    if tuple(k.shape[:3]) != (spec.batch, spec.kv_heads, spec.kv_seq):
        raise ValueError(f"k has shape {tuple(k.shape)}, but the spec says "
                         f"(batch {spec.batch}, kv_heads {spec.kv_heads}, kv_seq {spec.kv_seq}, ...)")
    if not 0 <= batch < spec.batch:
        raise ValueError(f"batch item {batch} does not exist: choose 0..{spec.batch - 1}")
    if head is not None and not 0 <= head < spec.heads:
        raise ValueError(f"head {head} does not exist: choose 0..{spec.heads - 1}")
    reasons = variant.unsupported(spec, q.device.type)
    if reasons:
        raise ValueError("; ".join(reasons))


def _compute_dtype(q: Tensor) -> torch.dtype:
    # maps are for looking at: float32 is plenty and half precision softmax over 32k keys is not
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def _rows_per_block(spec: AttentionSpec, block_rows: int | None) -> int:
    if block_rows is not None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, got {block_rows}")
        return min(block_rows, spec.seq)
    return max(1, min(spec.seq, SLAB_ELEMENTS // spec.kv_seq))


def _head_blocks(q: Tensor, k: Tensor, spec: AttentionSpec, variant: Variant, batch: int,
                 head: int, rows_per_block: int) -> Iterator[tuple[int, int, Tensor]]:
    """(lo, hi, weights of queries lo..hi-1 as (rows, kv_seq)) for one batch item and head."""
    dtype = _compute_dtype(q)
    kv_head = head // spec.groups
    q1 = q[batch:batch + 1, head:head + 1].to(dtype)  # (1, 1, S, D)
    k1 = k[batch:batch + 1, kv_head:kv_head + 1].to(dtype)  # (1, 1, KV, D)
    # one query head against its own kv head: groups is 1 here, so GQA needs no widening
    spec1 = spec.with_(batch=1, heads=1, kv_heads=1, dtype=str(dtype).removeprefix("torch."))
    for lo in range(0, spec.seq, rows_per_block):
        hi = min(spec.seq, lo + rows_per_block)
        rows = torch.arange(lo, hi, device=q.device)
        yield lo, hi, variant.weights(q1, k1, spec1, rows)[0, 0]


def _visible_counts(spec: AttentionSpec, variant: Variant, lo: int, hi: int,
                    device: torch.device) -> Tensor:
    mask = variant.mask(spec)
    if mask is None:
        return torch.full((hi - lo,), spec.kv_seq, device=device)
    rows = torch.arange(lo, hi, device=device)
    return mask.fn(rows[:, None], torch.arange(spec.kv_seq, device=device)[None, :]).sum(-1)


def _edges(n: int, cells: int) -> Tensor:
    """cells + 1 near-equal boundaries over 0..n: floor(i * n / cells)."""
    return torch.div(torch.arange(cells + 1) * n, cells, rounding_mode="floor")


class _Pooler:
    """Folds blocks of weight rows into a (cells x cells) map, mean or max."""

    def __init__(self, spec: AttentionSpec, max_size: int, reduce: str, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.reduce = reduce
        self.n_rows, self.n_cols = min(spec.seq, max_size), min(spec.kv_seq, max_size)
        self.q_edges, self.k_edges = _edges(spec.seq, self.n_rows), _edges(spec.kv_seq, self.n_cols)
        self.kv_seq = spec.kv_seq
        self.row_cell = torch.bucketize(torch.arange(spec.seq), self.q_edges[1:], right=True).to(device)
        self.col_cell = torch.bucketize(torch.arange(spec.kv_seq), self.k_edges[1:], right=True).to(device)
        self.acc = torch.zeros(self.n_rows, self.n_cols, dtype=dtype, device=device)
        self.row_acc = torch.zeros(self.n_rows, dtype=dtype, device=device)

    def _pool_keys(self, w: Tensor) -> Tensor:  # (rows, kv) -> (rows, n_cols)
        if self.n_cols == self.kv_seq:
            return w
        rows = w.shape[0]
        if self.kv_seq % self.n_cols == 0:  # equal runs: a view, and ~10x faster
            runs = w.view(rows, self.n_cols, self.kv_seq // self.n_cols)
            return runs.sum(-1) if self.reduce == "mean" else runs.amax(-1)
        out = w.new_zeros(rows, self.n_cols)
        if self.reduce == "mean":
            return out.index_add_(1, self.col_cell, w)
        # weights are >= 0, so starting from 0 does not change a max
        return out.scatter_reduce_(1, self.col_cell.expand(rows, -1), w, "amax")

    def add(self, lo: int, hi: int, w: Tensor) -> None:
        pooled = self._pool_keys(w)
        cells = self.row_cell[lo:hi]
        sums = w.sum(-1)
        if self.reduce == "mean":
            self.acc.index_add_(0, cells, pooled)
            self.row_acc.index_add_(0, cells, sums)
        else:
            self.acc.scatter_reduce_(0, cells[:, None].expand(-1, self.n_cols), pooled, "amax")
            self.row_acc.scatter_reduce_(0, cells, sums, "amax")

    def _per_query(self, acc: Tensor) -> Tensor:
        if self.reduce == "mean":
            counts = (self.q_edges[1:] - self.q_edges[:-1]).to(acc)
            return acc / (counts[:, None] if acc.dim() == 2 else counts)
        return acc

    def values(self) -> Tensor:
        return self._per_query(self.acc)

    def row_sums(self) -> Tensor:
        return self._per_query(self.row_acc)


def _scan_head(q: Tensor, k: Tensor, spec: AttentionSpec, variant: Variant, batch: int, head: int, rows_per_block: int,
               pooler: _Pooler | None, stats: bool, on_rows: Callable[[int], None] | None = None) -> StatSums | None:
    """One pass over a head's weights, feeding the pooler and/or the statistics, and on_rows."""
    sums = StatSums() if stats else None
    for lo, hi, w in _head_blocks(q, k, spec, variant, batch, head, rows_per_block):
        if pooler is not None:
            pooler.add(lo, hi, w)
        if sums is not None:
            positions = torch.arange(lo, hi, device=w.device) + spec.position_offset
            visible = _visible_counts(spec, variant, lo, hi, w.device)
            sums.add(block_sums(w, positions, visible))
        del w  # let the slab go before the next block is computed
        if on_rows is not None:
            on_rows(hi)
    return sums


def _map_from(pooler: _Pooler, spec: AttentionSpec, variant: Variant, batch: int,
              head: int) -> PooledMap:
    return PooledMap(
        values=pooler.values().float().cpu().numpy(),
        q_edges=pooler.q_edges.numpy(),
        k_edges=pooler.k_edges.numpy(),
        exact=pooler.n_rows == spec.seq and pooler.n_cols == spec.kv_seq,
        reduce=pooler.reduce,
        variant=variant.name,
        head=head,
        kv_head=head // spec.groups,
        batch=batch,
        spec=spec.to_dict(),
        row_sums=pooler.row_sums().float().cpu().numpy(),
    )


def _new_pooler(q: Tensor, spec: AttentionSpec, max_size: int, reduce: str) -> _Pooler:
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce {reduce!r}: choose mean or max")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be a whole number >= 1, got {max_size!r}")
    return _Pooler(spec, max_size, reduce, _compute_dtype(q), q.device)


# -- public API -------------------------------------------------------------------------------
def pooled_map(q: Tensor, k: Tensor, spec: AttentionSpec, variant: str, batch: int = 0,
               head: int = 0, max_size: int = 512, reduce: str = "mean",
               block_rows: int | None = None) -> PooledMap:
    """The attention weights of one batch item and head, at most max_size x max_size cells.

    Exact when seq and kv_seq both fit; otherwise pooled (see the module docstring for what a
    mean cell is). q is (B, H, S, D) and k (B, KVH, KV, D) as `random_qkv` makes them.
    """
    var = variants.get(variant)
    _check(q, k, spec, var, batch, head)
    pooler = _new_pooler(q, spec, max_size, reduce)
    _scan_head(q, k, spec, var, batch, head, _rows_per_block(spec, block_rows), pooler, stats=False)
    return _map_from(pooler, spec, var, batch, head)


def head_stats(q: Tensor, k: Tensor, spec: AttentionSpec, variant: str, batch: int = 0,
               block_rows: int | None = None) -> list[HeadStats]:
    """HeadStats for every head of one batch item, computed a block of query rows at a time."""
    var = variants.get(variant)
    _check(q, k, spec, var, batch, None)
    rows = _rows_per_block(spec, block_rows)
    return [_scan_head(q, k, spec, var, batch, h, rows, None, stats=True)
            .finish(head=h, kv_head=h // spec.groups, batch=batch)
            for h in range(spec.heads)]


def maps_bytes(spec: AttentionSpec) -> int:
    """Memory a map of this spec needs: q, k and v, and a slab of weights with its scores, mask
    and pooled copies (float64 at worst, a handful of copies)."""
    return io_bytes(spec)[0] + 8 * 8 * SLAB_ELEMENTS


# the most weights a map computes: every head's every row over every key (the statistics cover
# all heads). About 10M weights a second on one core of a small CPU, so the CPU bound is minutes
# of work, not hours (dense at seq 200,000 and 8 heads was 3.2e11: hours); a GPU does ~1000x more
MAX_MAP_WEIGHTS = {"cpu": 1 << 30, "cuda": 1 << 38}


def maps_weights(spec: AttentionSpec) -> int:
    """Weights a map computes: heads x seq x kv_seq (one batch item; rows are whole)."""
    return spec.heads * spec.seq * spec.kv_seq


def check_maps_fit(spec: AttentionSpec, variant: str, device: str) -> None:
    """Refuse, in one line that says what to change, a map that cannot fit or would compute
    for longer than the bound above (the CLI runs it in the foreground)."""
    reasons = variants.get(variant).unsupported(spec, device)
    if reasons:
        raise ValueError("; ".join(reasons))
    work, limit = maps_weights(spec), MAX_MAP_WEIGHTS.get(device.split(":")[0], MAX_MAP_WEIGHTS["cpu"])
    if work > limit:
        longest = math.isqrt(limit // spec.heads) if spec.seq == spec.kv_seq else limit // (spec.heads * spec.kv_seq)
        heads = f"{spec.heads} heads, or fewer heads" if spec.heads > 1 else "1 head"
        raise ValueError(f"maps of {variant} compute heads x seq x kv_seq = {si(work)} weights, past the "
                         f"{si(limit)} attn computes for a map on {device}; use seq <= {max(longest, 1):,} "
                         f"at {heads}")
    need, free = maps_bytes(spec), free_bytes(device)
    if need > free:
        raise DoesNotFit(f"does not fit: maps of {variant} at seq {spec.seq} need ~{nbytes(need)}, "
                         f"{nbytes(free)} free on {device}; lower seq, batch or heads")


def maps_json(spec: AttentionSpec, variant: str, head: int = 0, max_size: int = 512,
              reduce: str = "mean", temperature: float = 1.0, source: InputSource | None = None,
              mode: str = "forward", progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """What `python -m attn maps --json` prints: the pooled map of one head (batch item 0) and
    the statistics of every head, on seeded random inputs (with `temperature`), or on q and k
    captured from a real model when `source` says so (the spec then takes the layer's shape).
    A decode step's map (a decode spec; in decode a model's text is the cache) is the new
    tokens' rows over every cached key. `progress(rows, all_rows)` is called after each block of
    weight rows (every head's rows count): a job's bar, and where the job hears its cancel."""
    var = variants.get(variant)
    device = resolve_device(spec.device)
    if source is not None and source.kind != "random":
        q, k, _, spec = make_inputs(spec, source, mode)
        check_maps_fit(spec, variant, device)  # the layer's own shape, before any weight
        drawn = spec
    else:
        # the map and the statistics are batch item 0's: only it is drawn, so batch 4096 costs
        # what batch 1 does (every item drawn was 13 GB and a minute at seq 512 and 8 heads)
        drawn = spec.with_(batch=1)
        check_maps_fit(drawn, variant, device)  # before the inputs are drawn
        q, k, _ = random_qkv(drawn, temperature, device)
    _check(q, k, drawn, var, 0, head)
    pooler = _new_pooler(q, drawn, max_size, reduce)
    rows = _rows_per_block(drawn, None)
    stats = []
    for h in range(drawn.heads):
        # the drawn head's weights feed the map and its statistics in one pass
        on_rows = progress and (lambda hi, h=h: progress(h * drawn.seq + hi, drawn.heads * drawn.seq))
        sums = _scan_head(q, k, drawn, var, 0, h, rows, pooler if h == head else None, True, on_rows)
        stats.append(sums.finish(head=h, kv_head=h // drawn.groups, batch=0))
    return {
        "variant": variant,
        "spec": spec.to_dict(),
        "device": device,
        "temperature": temperature,
        "inputs": (source or InputSource(temperature=temperature)).describe(),
        "map": _map_from(pooler, spec, var, 0, head).to_dict(),
        "head_stats": [s.to_dict() for s in stats],
    }
