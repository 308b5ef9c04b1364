"""The three regimes attention is paid for in, and the spec of each.

- `forward`: one call over a whole sequence (a prefill; what an encoder does). The default.
- `train`: forward and backward with respect to q, k and v for an upstream gradient.
- `decode`: `new_tokens` queries against a cache of `context` keys, bottom-right causal: one
  serving step. A decode spec is an AttentionSpec with seq = new_tokens and kv_seq = context.
"""
from __future__ import annotations

from attn.spec import AttentionSpec

MODES = ("forward", "train", "decode")

TRAIN_CONVENTION = ("train: forward + backward; useful FLOPs, backward = 2x the forward's "
                    "matmul FLOPs (dq, dk from the scores' gradient; dv and the weights' "
                    "gradient from dO)")
EXECUTED_CONVENTION = ("flops_executed: the backward also recomputes the scores from saved "
                       "log-sum-exps (FlashAttention's convention: backward = 2.5x forward)")
DECODE_CONVENTION = ("decode: one step, new_tokens queries against context cached keys (bottom-"
                     "right causal); useful FLOPs of the step; bytes_read = the cache (or "
                     "recurrent state) the step reads plus the new queries")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose forward, train or decode")
    return mode


def decode_spec(spec: AttentionSpec, context: int, new_tokens: int = 1) -> AttentionSpec:
    """The spec of one decode step: `new_tokens` queries (the newest tokens, already in the
    cache) against `context` cached keys, causal from the bottom right."""
    for name, value in (("context", context), ("new_tokens", new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if new_tokens > context:
        raise ValueError(f"new_tokens ({new_tokens}) must be at most context ({context}): the new "
                         f"tokens are the last of the cache")
    return spec.with_(seq=new_tokens, kv_seq=context, causal=True, causal_align="bottom_right")


def is_decode_spec(spec: AttentionSpec) -> bool:
    return spec.causal and spec.causal_align == "bottom_right" and spec.seq <= spec.kv_seq
