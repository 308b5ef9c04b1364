"""Facts read from a transformers config: whether the model is an encoder or a decoder, and how
many positions it has. Read by the loader (sources.py) and the cost tables (costs.py) alike."""
from __future__ import annotations


def model_kind(config) -> str:
    """'decoder' (causal self-attention) or 'encoder' (every token sees every token)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if getattr(config, "is_decoder", False):
        return "decoder"
    return "encoder" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "decoder"


def max_positions(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
