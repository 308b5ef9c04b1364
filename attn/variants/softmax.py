"""Softmax attention over a mask: the plain math, a blockwise CPU kernel, FlexAttention on CUDA.

The three compute the same thing; tests hold them together. The plain math materialises the
(rows x kv_seq) weights and is what the maps draw; the blockwise kernel visits only the keys a
run of queries can see; FlexAttention skips whole masked blocks on the GPU.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attn.masks import Mask, MaskFn
from attn.spec import AttentionSpec
from attn.variants.gqa import repeat_kv

Tensor = torch.Tensor


def select_rows(q: Tensor, rows: Tensor | None) -> tuple[Tensor, Tensor]:
    """q restricted to some query rows, and those rows' indices."""
    if rows is None:
        return q, torch.arange(q.shape[-2], device=q.device)
    rows = rows.to(q.device)
    return q.index_select(-2, rows), rows


def masked_softmax(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Softmax over the last axis where allowed; a row with no allowed key gets all zeros."""
    if allowed is None:
        return scores.softmax(-1)
    scores = scores.masked_fill(~allowed, float("-inf"))
    # a fully masked row is all -inf and its softmax NaN; it attends to nothing, so 0
    return scores.softmax(-1).nan_to_num(0.0)


def softmax_weights(q: Tensor, k: Tensor, spec: AttentionSpec, rows: Tensor | None,
                    mask_fn: MaskFn | None) -> Tensor:
    """Plain softmax(q k^T / sqrt(d)) over a mask for some query rows: (B, H, rows, KV)."""
    q, rows = select_rows(q, rows)
    k = repeat_kv(k, spec.groups)
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, rows, KV)
    allowed = None
    if mask_fn is not None:
        allowed = mask_fn(rows[:, None], torch.arange(k.shape[-2], device=q.device)[None, :])
    return masked_softmax(scores, allowed)


# -- the blockwise kernel (CPU, and CUDA when FlexAttention is unavailable) ----------------------
# The kernel runs `chunk` queries at a time against only the keys they can see, each chunk
# through SDPA with its slice of the mask as an additive bias (on the CPU: torch's flash kernel,
# which adds the bias, softmaxes and multiplies by v tile by tile). What to call is worked out
# once per mask and chunk size, as a plan: chunks whose keys are equally many, equally spaced
# and masked alike (the inside of a sliding window, the regular blocks of a block layout) go
# into one SDPA call over strided views, with one shared bias. Python then runs a handful of
# steps instead of seq/chunk, and SDPA's threads get many chunks at once.
# caps on one call's temporaries: SDPA's output for the run's rows (per batch item) before it is
# copied into place, and the keys of a run of scattered keys (counted before `_split_band` reads
# a band of them in place: about half of block_sparse's keys are then gathered). Gathered keys
# are written, then read back by SDPA: on a 2-core CPU (B=1, H=8, D=64, float32, seq 4096)
# block_sparse ran 27 ms with 2048 keys a call (4 MiB of k), 34 ms with 8192, 40 ms with 256,
# all gathered; with the band split off, 4096 keys a run beat 2048 and 8192 by 5% (6 rounds).
# Rows: 2048 and 4096 tied for sliding_window; 2048 holds half the memory.
RUN_ROWS = 2048
RUN_GATHERED_KEYS = 4096
# SDPA's CPU kernel works on a row of scores in 16-float vectors and finishes a row's tail one
# float at a time (the exp included): a masked chunk's keys are padded, with masked keys, to a
# multiple of 16. sliding_window (window 256, chunk 32) sees 287 keys a chunk: at 288 the big
# call ran 10% faster (2-core CPU, seq 4096).
KEY_ALIGN = 16


@dataclass(frozen=True)
class ChunkRun:
    """`count` chunks of `rows` queries from query `lo`, one SDPA call.

    Keys of chunk i: `first + i*rows` .. + `keys` when `index` is None (a strided view of k),
    else row i of `index` (count x keys), gathered. `bias`: (rows x keys), 0 where visible and
    -inf where not, or None when every pair is visible. `empty`: rows that see no key (count 1).
    `granule`: the index is made of aligned runs of this many keys (a block layout's blocks),
    which are gathered whole by `granule_ids`, far faster than key by key.
    """

    lo: int
    rows: int
    count: int
    keys: int
    first: int
    index: Tensor | None
    bias: Tensor | None
    empty: Tensor | None
    granule: int = 1
    granule_ids: Tensor | None = None
    # the same chunks as two runs whose results are merged (`_split_band`): the keys that
    # move with the chunk, as a strided view, and the rest, gathered; `empty` there marks the
    # rows that see no key in that part
    split: tuple[ChunkRun, ChunkRun] | None = None


@dataclass(frozen=True)
class ChunkPlan:
    runs: tuple[ChunkRun, ...]
    covers_every_row: bool  # else rows outside the runs must be zeroed


def _aligned(keys: Tensor, allowed: Tensor, kv_seq: int | None) -> tuple[Tensor, Tensor]:
    """A contiguous run of keys widened, with masked keys, to a multiple of KEY_ALIGN keys,
    leftwards first; as it was when it is scattered or there is no room."""
    n = keys.numel()
    extra = -n % KEY_ALIGN
    first, last = int(keys[0]), int(keys[-1])
    if not extra or last - first + 1 != n:
        return keys, allowed
    left = min(extra, first)
    right = extra - left
    if right and (kv_seq is None or last + right >= kv_seq):
        return keys, allowed
    keys = torch.arange(first - left, last + 1 + right, device=keys.device)
    allowed = torch.cat([allowed.new_zeros(allowed.shape[0], left), allowed,
                         allowed.new_zeros(allowed.shape[0], right)], 1)
    return keys, allowed


def _chunk_run(lo: int, hi: int, keys: Tensor, allowed: Tensor, biases: dict,
               dtype: torch.dtype, kv_seq: int | None) -> ChunkRun | None:
    sees = allowed.any(-1)
    if not bool(sees.any()):
        return None
    # keys_for may be a superset: drop key columns at either end that no query here sees
    seen = allowed.any(0).nonzero().flatten()
    start, stop = int(seen[0]), int(seen[-1]) + 1
    keys, allowed = keys[start:stop], allowed[:, start:stop]
    if not bool(allowed.all()):
        keys, allowed = _aligned(keys, allowed, kv_seq)
    bias = None
    if not bool(allowed.all()):
        signature = (tuple(allowed.shape), allowed.cpu().numpy().tobytes())
        if signature not in biases:  # one tensor per pattern, so equal patterns are `is`-equal
            biases[signature] = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device
                                            ).masked_fill_(~allowed, float("-inf"))
        bias = biases[signature]
    first, last = int(keys[0]), int(keys[-1])
    contiguous = last - first + 1 == keys.numel()
    return ChunkRun(lo, hi - lo, 1, keys.numel(), first, None if contiguous else keys[None, :],
                    bias, None if bool(sees.all()) else ~sees)


def _joins(run: ChunkRun, nxt: ChunkRun) -> bool:
    """Whether `nxt` continues `run` as one more chunk of the same shape, spacing and mask."""
    if (nxt.rows != run.rows or nxt.keys != run.keys or nxt.bias is not run.bias
            or run.empty is not None or nxt.empty is not None
            or nxt.lo != run.lo + run.count * run.rows
            or (run.count + 1) * run.rows > RUN_ROWS):
        return False
    if run.index is None and nxt.index is None:
        return nxt.first == run.first + run.count * run.rows
    return (run.index is not None and nxt.index is not None
            and (run.count + 1) * run.keys <= RUN_GATHERED_KEYS)


def chunk_starts(seq: int, chunk: int, phase: int = 0) -> list[int]:
    """First query of each chunk: every `chunk` queries from `phase`, and 0."""
    phase %= chunk
    return ([0] if phase else []) + list(range(phase, seq, chunk))


def chunk_plan(mask: Mask, seq: int, chunk: int, dtype: torch.dtype, device: torch.device,
               phase: int = 0, kv_seq: int | None = None) -> ChunkPlan:
    """The SDPA calls of the blockwise kernel for this mask, chunk size and dtype.

    With `kv_seq`, a chunk's keys may be widened past the last one it sees (see KEY_ALIGN)."""
    runs: list[ChunkRun] = []
    biases: dict = {}
    starts = chunk_starts(seq, chunk, phase)
    for lo, hi in zip(starts, starts[1:] + [seq]):
        keys = mask.keys_for(lo, hi).to(device)
        if keys.numel() == 0:
            continue
        allowed = mask.fn(torch.arange(lo, hi, device=device)[:, None], keys[None, :])
        step = _chunk_run(lo, hi, keys, allowed, biases, dtype, kv_seq)
        if step is None:
            continue
        if runs and _joins(runs[-1], step):
            last = runs[-1]
            index = None if last.index is None else torch.cat([last.index, step.index])
            runs[-1] = ChunkRun(last.lo, last.rows, last.count + 1, last.keys, last.first, index,
                                last.bias, None)
        else:
            runs.append(step)
    covered = sum(r.rows * r.count for r in runs)
    return ChunkPlan(tuple(_split_band(_with_granule(r)) for r in runs), covered == seq)


def _split_band(run: ChunkRun) -> ChunkRun:
    """A gathered run whose chunks share a band of keys that moves with them (a block
    layout's local blocks), with `split` set: the band as a strided view and only the other
    keys gathered. Gathering is memory-bound on the CPU: at seq 4096 on 2 cores block_sparse
    gathered half as much and ran 8% faster, merge included."""
    if run.index is None or run.count == 1:
        return run
    index = run.index
    moves = (index - index[:1] == torch.arange(run.count)[:, None] * run.rows).all(0).tolist()
    first = index[0].tolist()
    # the longest stretch of columns that move with the chunk and hold consecutive keys
    best, start = (0, 0), 0
    for p in range(run.keys + 1):
        if p == run.keys or not moves[p] or (p > start and first[p] != first[p - 1] + 1):
            if p - start > best[1] - best[0]:
                best = (start, p)
            start = p + (p < run.keys and not moves[p])
    band_cols = torch.arange(*best)
    if band_cols.numel() * 2 < run.keys or band_cols.numel() == run.keys:
        return run
    rest_cols = torch.cat([torch.arange(0, best[0]), torch.arange(best[1], run.keys)])

    def part(cols: Tensor, first: int, index: Tensor | None) -> ChunkRun:
        visible = torch.ones(run.rows, cols.numel(), dtype=torch.bool)
        bias = None
        if run.bias is not None:
            bias = run.bias[:, cols].contiguous()
            visible = bias == 0
            if bool(visible.all()):
                bias = None
        sees = visible.any(-1)
        return ChunkRun(run.lo, run.rows, run.count, cols.numel(), first, index, bias,
                        None if bool(sees.all()) else ~sees)

    band = part(band_cols, int(index[0, best[0]]), None)
    rest = _with_granule(part(rest_cols, 0, index[:, rest_cols].contiguous()))
    return ChunkRun(run.lo, run.rows, run.count, run.keys, run.first, run.index, run.bias,
                    run.empty, run.granule, run.granule_ids, (band, rest))


def _with_granule(run: ChunkRun) -> ChunkRun:
    """The run, with the largest g such that its keys are whole aligned runs of g keys."""
    if run.index is None:
        return run
    keys = run.index
    starts = torch.ones_like(keys, dtype=torch.bool)
    starts[:, 1:] = keys[:, 1:] != keys[:, :-1] + 1
    bounds = torch.cat([keys[starts], torch.nonzero(starts)[:, 1], torch.tensor([run.keys])])
    g = math.gcd(*bounds.tolist())
    if g <= 1:
        return run
    return ChunkRun(run.lo, run.rows, run.count, run.keys, run.first, run.index, run.bias,
                    run.empty, g, keys[:, ::g] // g)


def _gathered(x: Tensor, run: ChunkRun) -> Tensor:
    """(count, heads, keys, D): the keys of each chunk of the run, from x (heads, kv_seq, D)."""
    h, n, d = x.shape
    if run.granule_ids is not None and n % run.granule == 0:
        picked = x.unflatten(1, (n // run.granule, run.granule)).index_select(
            1, run.granule_ids.flatten())  # (heads, count * keys / g, g, D)
    else:
        picked = x.index_select(1, run.index.flatten())
    return picked.reshape(h, run.count, run.keys, d).transpose(0, 1)


_plan_lock = threading.Lock()
_plans: OrderedDict[tuple, ChunkPlan] = OrderedDict()
_PLANS_KEPT = 32


def _cached_plan(key: tuple | None, mask: Mask, seq: int, kv_seq: int, chunk: int,
                 dtype: torch.dtype, device: torch.device, phase: int) -> ChunkPlan:
    if key is None:
        return chunk_plan(mask, seq, chunk, dtype, device, phase, kv_seq)
    key = (*key, kv_seq, chunk, phase, dtype, str(device))
    with _plan_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = chunk_plan(mask, seq, chunk, dtype, device, phase, kv_seq)
    with _plan_lock:
        _plans[key] = plan
        while len(_plans) > _PLANS_KEPT:
            _plans.popitem(last=False)
    return plan


def _chunk_view(x: Tensor, first: int, count: int, rows: int, step: int) -> Tensor:
    """(count, heads, rows, D) over x (heads, seq, D): chunk i is rows first + i*step ...
    A view: overlapping chunks (keys of neighbouring queries) share memory."""
    sh, ss, sd = x.stride()
    return x.as_strided((count, x.shape[0], rows, x.shape[2]), (step * ss, sh, ss, sd),
                        x.storage_offset() + first * ss)


def _split_run(q_c: Tensor, k: Tensor, v: Tensor, parts: tuple[ChunkRun, ChunkRun],
               out: Tensor) -> None:
    """One run as its band and its other keys, merged into `out` (heads, count, rows, D).

    The softmax over all the keys is the two partial softmaxes weighted by their sums:
    sigmoid(lse_band - lse_rest) is the band's share. torch's CPU flash kernel returns the
    log-sum-exp (SDPA does not); for a row that sees no key it says 0, so those rows' shares
    are set from the plan."""
    band, rest = parts
    k_b = _chunk_view(k, band.first, band.count, band.keys, band.rows).permute(1, 0, 2, 3)
    v_b = _chunk_view(v, band.first, band.count, band.keys, band.rows).permute(1, 0, 2, 3)
    k_r = _gathered(k, rest).permute(1, 0, 2, 3)
    v_r = _gathered(v, rest).permute(1, 0, 2, 3)
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    o_b, lse_b = flash(q_c, k_b, v_b, attn_mask=band.bias)
    o_r, lse_r = flash(q_c, k_r, v_r, attn_mask=rest.bias)
    share = torch.sigmoid(lse_b - lse_r)
    if band.empty is not None:
        share[..., band.empty] = 0
    if rest.empty is not None:
        share[..., rest.empty] = 1
    torch.lerp(o_r, o_b, share.unsqueeze(-1).to(o_r.dtype), out=out)


def blockwise_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, mask: Mask,
                        chunk: int, cache_key: tuple | None = None, phase: int = 0) -> Tensor:
    """Masked softmax attention, `chunk` queries at a time over only the keys they can see.

    Chunks start every `chunk` queries from query `phase` (so they can line up with a mask's
    blocks). `cache_key` names the mask (e.g. `mask_cache_key(variant, spec, device)`): with
    it, the plan is worked out once and reused. Extra memory is one SDPA call's bias and
    gathered keys.
    """
    b, h, s, _ = q.shape
    plan = _cached_plan(cache_key, mask, s, k.shape[-2], chunk, q.dtype, q.device, phase)
    out = (q.new_empty if plan.covers_every_row else q.new_zeros)(b, h, s, v.shape[-1])
    gqa = spec.groups > 1
    for run in plan.runs:
        if run.count == 1:
            lo, hi = run.lo, run.lo + run.rows
            if run.index is None:
                k_c = k[:, :, run.first:run.first + run.keys]
                v_c = v[:, :, run.first:run.first + run.keys]
            else:
                k_c = torch.stack([_gathered(x, run)[0] for x in k])
                v_c = torch.stack([_gathered(x, run)[0] for x in v])
            out[:, :, lo:hi] = F.scaled_dot_product_attention(
                q[:, :, lo:hi], k_c, v_c, attn_mask=run.bias, enable_gqa=gqa)
            if run.empty is not None:
                # a row with no visible key attends to nothing: 0, whatever SDPA makes of it
                out[:, :, lo:hi][:, :, run.empty] = 0
            continue
        # The chunks stand in one axis of the call, (count, heads, ...). Without GQA they go in
        # SDPA's head axis, (heads, count, ...): its output, contiguous, then lands in `out`
        # as one block per head rather than row by row (about 5% faster at seq 4096).
        order = (0, 1) if gqa else (1, 0)
        # the split's merge reads the flash kernel's log-sum-exp, through which autograd passes
        # no gradient (a backward through it was 36% off): training takes the whole run at once
        split = run.split is not None and not gqa and not (torch.is_grad_enabled() and q.requires_grad)
        for i in range(b):
            q_c = _chunk_view(q[i], run.lo, run.count, run.rows, run.rows)
            if split:
                _split_run(q_c.permute(1, 0, 2, 3), k[i], v[i], run.split,
                           _chunk_view(out[i], run.lo, run.count, run.rows, run.rows
                                       ).permute(1, 0, 2, 3))
                continue
            if run.index is None:
                k_c = _chunk_view(k[i], run.first, run.count, run.keys, run.rows)
                v_c = _chunk_view(v[i], run.first, run.count, run.keys, run.rows)
            else:
                k_c, v_c = _gathered(k[i], run), _gathered(v[i], run)
            q_c, k_c, v_c = (x.permute(*order, 2, 3) for x in (q_c, k_c, v_c))
            _chunk_view(out[i], run.lo, run.count, run.rows, run.rows).permute(*order, 2, 3).copy_(
                F.scaled_dot_product_attention(q_c, k_c, v_c, attn_mask=run.bias, enable_gqa=gqa))
    return out
