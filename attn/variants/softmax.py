"""Softmax attention over a mask: the plain math, a blockwise CPU kernel, FlexAttention on CUDA.

The three compute the same thing; tests hold them together. The plain math materialises the
(rows x kv_seq) weights and is what the maps draw; the blockwise kernel visits only the keys a
run of queries can see; FlexAttention skips whole masked blocks on the GPU.
"""
from __future__ import annotations

import math
import threading
from typing import Callable

import torch

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
def blockwise_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, mask: Mask,
                        chunk: int) -> Tensor:
    """Masked softmax attention, `chunk` queries at a time over only the keys they can see.

    Extra memory is B*H*chunk*keys(chunk) scores, never seq x kv_seq.
    """
    b, h, s, d = q.shape
    out = q.new_zeros(b, h, s, v.shape[-1])
    scale = 1.0 / math.sqrt(d)
    for lo in range(0, s, chunk):
        hi = min(s, lo + chunk)
        keys = mask.keys_for(lo, hi)
        if keys.numel() == 0:
            continue  # nothing visible: those rows stay 0
        keys = keys.to(q.device)
        contiguous = bool(keys[-1] - keys[0] + 1 == keys.numel())
        if contiguous:  # a slice is a view: no copy of k and v
            k_c = k[:, :, int(keys[0]):int(keys[-1]) + 1]
            v_c = v[:, :, int(keys[0]):int(keys[-1]) + 1]
        else:
            k_c, v_c = k.index_select(2, keys), v.index_select(2, keys)
        k_c, v_c = repeat_kv(k_c, spec.groups), repeat_kv(v_c, spec.groups)
        q_idx = torch.arange(lo, hi, device=q.device)
        allowed = mask.fn(q_idx[:, None], keys[None, :])
        scores = (q[:, :, lo:hi] @ k_c.transpose(-1, -2)) * scale  # (B, H, chunk, keys)
        out[:, :, lo:hi] = masked_softmax(scores, allowed) @ v_c
    return out


# -- FlexAttention (compiled once, block masks cached per shape) --------------------------------
_flex_lock = threading.Lock()
_compiled_flex: Callable | None = None
_block_masks: dict[tuple, object] = {}

# block sizes tried on a 2-core CPU: 128 x 128 beat the default for windows of 64..1024
FLEX_BLOCK_SIZE = 128


def mask_cache_key(variant: str, spec: AttentionSpec, device: str) -> tuple:
    return (variant, spec.seq, spec.kv_seq, spec.causal, spec.causal_align, spec.window,
            spec.block, spec.n_global, spec.n_random, spec.seed, device)


def flex_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, mask: Mask,
                   variant: str) -> Tensor:
    """FlexAttention with this mask's block mask; compiles on first use (tens of seconds)."""
    from torch.nn.attention.flex_attention import create_block_mask
    from torch.nn.attention.flex_attention import flex_attention as flex

    global _compiled_flex
    key = mask_cache_key(variant, spec, str(q.device))
    with _flex_lock:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex, dynamic=False)
        block_mask = _block_masks.get(key)
        if block_mask is None:
            fn = mask.fn

            def mask_mod(b, h, q_idx, kv_idx):
                return fn(q_idx, kv_idx)

            block_mask = create_block_mask(mask_mod, None, None, spec.seq, spec.kv_seq,
                                           device=str(q.device), BLOCK_SIZE=FLEX_BLOCK_SIZE)
            _block_masks[key] = block_mask
    return _compiled_flex(q, k, v, block_mask=block_mask, enable_gqa=spec.groups > 1)


def flex_is_cached(variant: str, spec: AttentionSpec, device: str) -> bool:
    return mask_cache_key(variant, spec, device) in _block_masks


def masked_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, mask: Mask,
                     variant: str, chunk: int) -> Tensor:
    """The fast path of a masked variant: FlexAttention on CUDA, the blockwise kernel elsewhere."""
    if q.is_cuda:
        return flex_attention(q, k, v, spec, mask, variant)
    return blockwise_attention(q, k, v, spec, mask, chunk)
