"""dense: eager softmax(q k^T / sqrt(d) + mask) v that materialises the weights. The reference."""
from __future__ import annotations

from typing import Callable

import torch

from attn.masks import Mask, causal_key_range, causal_pairs, generate_causal
from attn.spec import AttentionSpec
from attn.variants.gqa import repeat_kv
from attn.variants.registry import Variant, register
from attn.variants.softmax import select_rows, softmax_weights


def causal_mask(spec: AttentionSpec) -> Mask | None:
    if not spec.causal:
        return None

    def keys_for(lo: int, hi: int) -> torch.Tensor:
        return torch.arange(*causal_key_range(spec, lo, hi))

    return Mask(generate_causal(spec.position_offset), keys_for, "causal")


def full_mask(spec: AttentionSpec) -> Mask:
    """The causal mask, or all-True without causal: what exact full attention sees."""
    mask = causal_mask(spec)
    if mask is not None:
        return mask
    return Mask(lambda q, k: torch.ones(torch.broadcast_shapes(q.shape, k.shape), dtype=torch.bool,
                                        device=q.device),
                lambda lo, hi: torch.arange(spec.kv_seq), "full")


def weights(q, k, spec: AttentionSpec, rows=None):
    mask = causal_mask(spec)
    return softmax_weights(q, k, spec, rows, mask.fn if mask else None)


def run(q, k, v, spec: AttentionSpec):
    return weights(q, k, spec) @ repeat_kv(v, spec.groups)  # (B, H, S, D)


def activated_weights(q, k, spec: AttentionSpec, rows, activation: Callable[[torch.Tensor], torch.Tensor],
                      scale: float, shift: float = 0.0):
    """activation(scale * q k^T + shift) with masked pairs 0, for some query rows: the weights of
    an attention that activates each score on its own instead of a softmax over the row
    (sigmoid, relu). (B, H, rows, KV); rows need not sum to 1.

    Masked scores are set to -inf before the activation, which both take to exactly 0 (with a
    zero gradient): one fewer B*H*S*KV copy than masking after it, and autograd keeps only the
    activation's output (which the product with v shares) and the boolean mask."""
    q, rows = select_rows(q, rows)
    scores = (q @ repeat_kv(k, spec.groups).transpose(-1, -2)) * scale
    mask = causal_mask(spec)
    if mask is not None:
        allowed = mask.fn(rows[:, None], torch.arange(k.shape[-2], device=q.device)[None, :])
        scores = scores.masked_fill(~allowed, float("-inf"))
    if shift:
        scores = scores + shift
    return activation(scores)


def activated_saved_bytes(spec: AttentionSpec) -> int:
    """What autograd keeps through activated_weights @ v beyond the inputs: the activation's
    output (the same tensor the product with v keeps), the boolean causal mask, and under GQA
    the widened k and v the matmuls saw."""
    widened = 0 if spec.groups == 1 else 2 * spec.batch * spec.heads * spec.kv_seq * spec.head_dim * spec.dtype_bytes
    return weights_bytes(spec) + (spec.seq * spec.kv_seq if spec.causal else 0) + widened


def activated_fields() -> dict:
    """Variant fields shared by the attentions built on activated_weights (sigmoid, relu):
    every pair under the causal mask, useful FLOPs, dense's memory, an eager torch kernel."""
    return dict(exact=False, pairs=causal_pairs, flops=lambda spec: useful_flops(spec, causal_pairs(spec)),
                extra_bytes=extra_bytes, kernel=lambda q, k, v, spec: "eager (torch)",
                saved_bytes=activated_saved_bytes, backward_bytes=backward_bytes, mask=causal_mask)


def useful_flops(spec: AttentionSpec, pairs: int) -> int:
    """4 * B * H * D per unmasked pair: q k^T and weights @ v, a multiply and an add each."""
    return 4 * spec.batch * spec.heads * spec.head_dim * pairs


def extra_bytes(spec: AttentionSpec) -> int:
    # scores and weights, both B*H*S*KV (a causal mask adds the masked copy and its clean-up:
    # measured 4 copies on the CPU), plus the widened k and v under GQA
    copies = 4 if spec.causal else 2
    scores = copies * spec.batch * spec.heads * spec.seq * spec.kv_seq * spec.dtype_bytes
    widened = 0 if spec.groups == 1 else 2 * spec.batch * spec.heads * spec.kv_seq * spec.head_dim * spec.dtype_bytes
    return scores + widened


def weights_bytes(spec: AttentionSpec) -> int:
    """One B*H*S*KV matrix of scores or weights."""
    return spec.batch * spec.heads * spec.seq * spec.kv_seq * spec.dtype_bytes


def saved_bytes(spec: AttentionSpec) -> int:
    # autograd keeps the weights for the softmax's and AV's backward; with a causal mask also the
    # masked scores and the boolean mask (measured on the CPU: 2 matrices + S*KV bytes), and
    # under GQA the widened k and v that the matmuls saw
    causal = spec.causal
    widened = 0 if spec.groups == 1 else 2 * spec.batch * spec.heads * spec.kv_seq * spec.head_dim * spec.dtype_bytes
    return (2 if causal else 1) * weights_bytes(spec) + (spec.seq * spec.kv_seq if causal else 0) + widened


def backward_bytes(spec: AttentionSpec) -> int:
    # the gradients of the weights and of the scores, both B*H*S*KV
    return 2 * weights_bytes(spec)


VARIANT = register(Variant(
    name="dense",
    title="Dense (eager)",
    summary="softmax(QK^T/sqrt(d) + mask) V with the full weight matrix in memory; the reference.",
    exact=True,
    run=run,
    weights=weights,
    pairs=causal_pairs,
    flops=lambda spec: useful_flops(spec, causal_pairs(spec)),
    extra_bytes=extra_bytes,
    color="#ef4444",
    kernel=lambda q, k, v, spec: "eager (torch)",
    saved_bytes=saved_bytes,
    backward_bytes=backward_bytes,
    mask=causal_mask,
))
