"""Everything about one model and one text as plain JSON: what `python -m attn model --json` prints."""
from __future__ import annotations

import numpy as np

from attn.models.capture import capture_attention, rollout
from attn.models.costs import (CONVENTION, KAPLAN_CONVENTION, kaplan_convention_flops_per_token,
                               kaplan_flops_per_token, kv_cache_curve, layer_costs, model_flops,
                               model_shape, param_count)
from attn.models.sources import DEFAULT_MODEL, load_model
from attn.models.timing import time_modules

KV_CONTEXTS = (128, 512, 1024, 2048, 4096, 8192, 16384, 32768)
MAP_DECIMALS = 5


def model_json(source: str = DEFAULT_MODEL, text: str = "The quick brown fox jumps over the lazy dog.",
               max_tokens: int | None = 128, include_maps: bool = True, repeats: int = 3,
               include_timing: bool = True) -> dict:
    """Model info, tokens, per-layer costs (each with its convention), KV-cache curve, measured
    time per module and, with `include_maps`, every layer's attention weights and the rollout.

    Sections that cannot be computed for this model (costs of an unknown family) hold
    {"error": reason} so the rest still arrives.
    """
    loaded = load_model(source, "eager")
    config = loaded.config
    capture = capture_attention(loaded, text, max_tokens=max_tokens)
    seq = capture.seq_len
    result: dict = {
        "model": {
            "name": loaded.name,
            "source": loaded.source,
            "kind": loaded.kind,
            "model_type": config.model_type,
            "num_parameters": loaded.num_parameters,
            "attn_implementation": loaded.attn_implementation,
            "tokenizer": loaded.tokenizer_note,
            "layers": config.num_hidden_layers,
            "heads": config.num_attention_heads,
        },
        "text": text,
        "tokens": capture.tokens,
        "seq_len": seq,
    }
    try:
        shape = model_shape(config)
        params = param_count(config)
        totals = model_flops(config, seq)
        result["model"].update(shape.to_dict(), non_embedding_parameters=params.non_embedding)
        result["costs"] = {
            "convention": CONVENTION,
            "layers": [c.to_dict() for c in layer_costs(config, seq)],
            "totals": totals.to_dict(),
            "kaplan": {
                "convention": KAPLAN_CONVENTION,
                "n_ctx": seq,
                "formula_flops_per_token": kaplan_flops_per_token(config, seq),
                "counted_flops_per_token": kaplan_convention_flops_per_token(config, seq),
            },
        }
        contexts = sorted({seq, *KV_CONTEXTS})
        result["kv_cache"] = kv_cache_curve(config, contexts)
    except ValueError as exc:
        result["costs"] = {"error": str(exc)}
        result["kv_cache"] = {"error": str(exc)}
    if include_timing:
        try:
            result["timing"] = time_modules(loaded, text, repeats=repeats, max_tokens=max_tokens)
        except ValueError as exc:
            result["timing"] = {"error": str(exc)}
    if include_maps:
        result["maps"] = {
            "shape": list(capture.attentions.shape),  # layers, heads, T, T
            "attentions": np.round(capture.attentions, MAP_DECIMALS).tolist(),
            "rollout": np.round(rollout(capture.attentions), MAP_DECIMALS).tolist(),
        }
    return result
