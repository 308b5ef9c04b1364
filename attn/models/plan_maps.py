"""A plan's attention maps next to the base model's: every layer's (heads, T, T) weights for one
short text, before (the model as loaded, eager) and after (the planned copy).

The planned copy runs a window or block layout through attn's own kernel, which returns no
weights; for the maps it runs under a second registered function that keeps that kernel's output
and writes the same masked softmax out, so the drawn weights are the ones the layer applies.
"""
from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from attn.models.capture import capture_attention
from attn.models.plan import PLAN_ATTR, LayerPlan, _plan_mask, apply_plan, plan_attention, plan_for
from attn.models.sources import encode, load_model

MAPS_IMPLEMENTATION = "attn_plan_maps"
MAP_TOKENS = 64  # the maps' text is cut here: 2 x layers x heads x T x T floats cross to the page
_registered = threading.Lock()


def _plan_attention_with_weights(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 attention_mask: torch.Tensor | None, scaling: float | None = None,
                                 dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """plan_attention, and where its sparse kernel answered without weights, those weights: the
    kernel runs only when the model's own mask is plain (none, or causal), so the layout's mask
    (causality included, from attn's variants) is all that hides a key."""
    out, weights = plan_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    if weights is not None:
        return out, weights
    layer: LayerPlan = getattr(module, PLAN_ATTR)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    groups = query.shape[1] // key.shape[1]
    scores = torch.matmul(query, key.repeat_interleave(groups, 1).transpose(2, 3)) * scaling  # (B, H, T, S)
    q_len, kv_len = scores.shape[-2:]
    causal = bool(getattr(module, "is_causal", False))
    allowed = _plan_mask(layer, q_len, kv_len, causal, scores.device)
    if causal:
        allowed = allowed & torch.ones(q_len, kv_len, dtype=torch.bool, device=scores.device).tril(kv_len - q_len)
    weights = torch.softmax(scores.masked_fill(~allowed, torch.finfo(scores.dtype).min), dim=-1)
    return out, weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

    with _registered:
        AttentionInterface.register(MAPS_IMPLEMENTATION, _plan_attention_with_weights)
        if MAPS_IMPLEMENTATION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
            AttentionMaskInterface.register(MAPS_IMPLEMENTATION, eager_mask)


def plan_maps(source: str, layers: str, kv_heads: int | None = None, activation: str | None = None,
              text: str = "", max_tokens: int = MAP_TOKENS) -> dict:
    """{tokens, before (L, H, T, T), after (L, H, T, T)} as float32 arrays, T at most max_tokens."""
    base = load_model(source, "eager")
    plan = plan_for(base, layers, kv_heads, activation)
    before = capture_attention(base, text, max_tokens=max_tokens)
    planned = apply_plan(base, plan)
    _register()
    planned.model.set_attn_implementation(MAPS_IMPLEMENTATION)
    ids, tokens = encode(planned, text, max_tokens)
    with planned.lock, torch.no_grad():
        out = planned.model(input_ids=ids, output_attentions=True)
    after = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()
    return {"tokens": list(tokens), "before": before.attentions.astype(np.float32),
            "after": after.astype(np.float32)}
