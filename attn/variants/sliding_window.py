"""sliding_window: each query sees the last `window` keys, itself included (causal), or keys
less than `window` positions away on either side (not causal)."""
from __future__ import annotations

import torch

from attn.masks import Mask, generate_sliding_window, sliding_window_pairs
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.registry import Variant, register
from attn.variants.softmax import masked_attention, softmax_weights

# queries per step of the CPU kernel: small enough that the band, not the chunk, dominates the
# keys visited (chunk + window - 1 per query), large enough to keep matmuls efficient
CHUNK = 64


def sliding_window_mask(spec: AttentionSpec) -> Mask:
    off, w = spec.position_offset, spec.window

    def keys_for(lo: int, hi: int) -> torch.Tensor:
        start = min(spec.kv_seq, max(0, lo + off - w + 1))
        stop = min(spec.kv_seq, hi - 1 + off + (1 if spec.causal else w))
        # a window wholly past the last key (top_left, more queries than keys) or before the
        # first: no keys, not an inverted range
        return torch.arange(start, max(start, stop))

    return Mask(generate_sliding_window(w, off, spec.causal), keys_for, "sliding_window")


def weights(q, k, spec: AttentionSpec, rows=None):
    return softmax_weights(q, k, spec, rows, sliding_window_mask(spec).fn)


def run(q, k, v, spec: AttentionSpec):
    return masked_attention(q, k, v, spec, sliding_window_mask(spec), "sliding_window", CHUNK)


def extra_bytes(spec: AttentionSpec) -> int:
    keys = min(spec.kv_seq, CHUNK + (1 if spec.causal else 2) * spec.window)
    return 2 * spec.batch * spec.heads * min(CHUNK, spec.seq) * keys * spec.dtype_bytes


VARIANT = register(Variant(
    name="sliding_window",
    title="Sliding window",
    summary="Each query attends to the last `window` keys (Mistral, Longformer's local part): "
            "exact on its band, linear in sequence length.",
    exact=True,
    params=("window",),
    run=run,
    weights=weights,
    pairs=sliding_window_pairs,
    flops=lambda spec: dense.useful_flops(spec, sliding_window_pairs(spec)),
    extra_bytes=extra_bytes,
    mask=sliding_window_mask,
))
