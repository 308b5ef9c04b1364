"""sliding_window: each query sees the last `window` keys, itself included (causal), or keys
less than `window` positions away on either side (not causal)."""
from __future__ import annotations

import torch

from attn.masks import Mask, generate_sliding_window, sliding_window_pairs
from attn.params import Param
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.masked import masked_attention, masked_kernel
from attn.variants.registry import Variant, register
from attn.variants.softmax import RUN_ROWS, softmax_weights

WINDOW = Param("window", 256, "keys each query sees: the last `window` (causal), or those less "
               "than `window` positions away", lo=1, hi=1 << 20, unit="tokens")

# queries per chunk of the CPU kernel: each query visits chunk + window - 1 keys, so smaller
# chunks waste less, but SDPA's tiles get less efficient below 32 rows. On a 2-core CPU
# (bench/variants_cpu.py, seq 4096) 32 was fastest or tied at windows 64, 256 and 1024; 16 tied
# at 64 and 256 and lost by 1.6x at 1024; 64 was 5-10% slower, 128 and 256 slower still.
CHUNK = 32


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
    # the CPU kernel: one SDPA call's output for a run of chunks (one batch item) before it is
    # copied into place, and a chunk's bias; SDPA's own tiles are small
    keys = min(spec.kv_seq, CHUNK + (1 if spec.causal else 2) * spec.window)
    rows = min(spec.seq, RUN_ROWS)
    return (spec.heads * rows * spec.head_dim + CHUNK * keys) * spec.dtype_bytes


def decode_keys(spec: AttentionSpec) -> int:
    """A decode step's new tokens see at most `window` keys each: a rolling cache of
    window + new_tokens - 1 keys is all a server keeps."""
    return min(spec.kv_seq, spec.window + spec.seq - 1)


def decoder(q, k, v, spec: AttentionSpec):
    # the rolling cache: the last decode_keys(spec) keys, contiguous, as a server keeps them
    keys = decode_keys(spec)
    k, v = k[:, :, -keys:].contiguous(), v[:, :, -keys:].contiguous()
    rolled = spec.with_(kv_seq=keys)
    return lambda: run(q, k, v, rolled)


VARIANT = register(Variant(
    name="sliding_window",
    title="Sliding window",
    summary="Each query attends to the last `window` keys (Mistral, Longformer's local part): "
            "exact on its band, linear in sequence length.",
    exact=True,
    params=(WINDOW,),
    run=run,
    weights=weights,
    pairs=sliding_window_pairs,
    flops=lambda spec: dense.useful_flops(spec, sliding_window_pairs(spec)),
    extra_bytes=extra_bytes,
    color="#10b981",
    kernel=masked_kernel,
    recomputes=lambda spec: True,  # the CPU flash kernel and FlexAttention recompute the scores
    decode_keys=decode_keys,
    decoder=decoder,
    fused_on_cpu=True,
    mask=sliding_window_mask,
))
