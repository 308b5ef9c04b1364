"""The fast path of a masked variant (sliding_window, block_sparse): FlexAttention on CUDA, with
its block mask compiled once per shape and cached, and the blockwise kernel (attn.variants.softmax)
elsewhere."""
from __future__ import annotations

import threading
from typing import Callable

import torch

from attn.caches import LRU
from attn.masks import Mask
from attn.spec import AttentionSpec
from attn.variants.softmax import blockwise_attention

Tensor = torch.Tensor

# -- FlexAttention (compiled once, block masks cached per shape) --------------------------------
_flex_lock = threading.Lock()
_compiled_flex: Callable | None = None
# a BlockMask holds device tensors (its block indices): a few dozen shapes at a time
_block_masks = LRU("flex block masks", 32)

# FlexAttention runs the masked variants on CUDA, where 128 is its default tile. On the CPU
# (bench/variants_cpu.py) 64 beat 128 and 256 at window 256, but the blockwise kernel beat all
# three, so the CPU does not use FlexAttention by default.
FLEX_BLOCK_SIZE = 128
FLEX_RECOMPILE_LIMIT = 256


def mask_cache_key(variant: str, spec: AttentionSpec, device: str) -> tuple:
    """What a mask depends on: the shape, the alignment, the seed and the variant's parameters
    (spec.params, those that differ from their defaults), never another variant's."""
    return (variant, spec.seq, spec.kv_seq, spec.causal, spec.causal_align, spec.seed, spec.params,
            device, FLEX_BLOCK_SIZE)


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
    # every new block mask (a new mask function, or a new shape) is a recompile; past dynamo's
    # default limit of 8, flex_attention silently falls back to its unfused implementation,
    # which materialises seq x kv_seq scores: raise the limit for these calls only
    with torch._dynamo.config.patch(recompile_limit=FLEX_RECOMPILE_LIMIT):
        return _compiled_flex(q, k, v, block_mask=block_mask, enable_gqa=spec.groups > 1)


def flex_is_cached(variant: str, spec: AttentionSpec, device: str) -> bool:
    return mask_cache_key(variant, spec, device) in _block_masks


def masked_kernel(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec) -> str:
    """The kernel masked_attention runs: FlexAttention on CUDA, the blockwise kernel elsewhere."""
    return "flex_attention" if q.is_cuda else "blockwise (torch)"


def masked_attention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, mask: Mask,
                     variant: str, chunk: int, phase: int = 0) -> Tensor:
    """The fast path of a masked variant: FlexAttention on CUDA, the blockwise kernel elsewhere."""
    if q.is_cuda:
        return flex_attention(q, k, v, spec, mask, variant)
    return blockwise_attention(q, k, v, spec, mask, chunk,
                               cache_key=mask_cache_key(variant, spec, str(q.device)), phase=phase)
