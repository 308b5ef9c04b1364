"""Real transformers models: load them without network, capture their attention, count and time
their cost layer by layer.

    loaded = load_model("minilm")                       # or a preset name, or a local directory
    cap = capture_attention(loaded, "The cat sat.")     # (layers, heads, T, T) weights
    qkv = capture_qkv(loaded, long_text)                 # q, k, v + AttentionSpec per layer
    # attn.maps.pooled_map(layer.q, layer.k, layer.spec, layer.variant, 0, head, 512) for any layer
    costs = layer_costs(loaded.config, seq_len=cap.seq_len)

transformers is imported only when a model or config is first needed.
"""
from attn.models.capture import (Capture, LayerQKV, QKVCapture, attention_modules, capture_attention,
                                 capture_qkv, captured_qkv, rollout)
from attn.models.costs import (CONVENTION, KAPLAN_CONVENTION, LayerCost, ModelFlops, ModelShape,
                               ParamCount, kaplan_convention_flops_per_token, kaplan_flops_per_token,
                               kv_cache_curve, layer_costs, model_flops, model_shape, param_count)
from attn.models.report import model_json
from attn.models.sources import (DEFAULT_MODEL, IMPLEMENTATIONS, PRESETS, LoadedModel, ModelLoadError,
                                 encode, load_model, model_choices, model_config, preset_config)
from attn.models.timing import compare_implementations, time_modules

__all__ = [
    "Capture", "LayerQKV", "QKVCapture", "attention_modules", "capture_attention", "capture_qkv",
    "captured_qkv", "rollout",
    "CONVENTION", "KAPLAN_CONVENTION", "LayerCost", "ModelFlops", "ModelShape", "ParamCount",
    "kaplan_convention_flops_per_token", "kaplan_flops_per_token", "kv_cache_curve", "layer_costs",
    "model_flops", "model_shape", "param_count",
    "model_json",
    "DEFAULT_MODEL", "IMPLEMENTATIONS", "PRESETS", "LoadedModel", "ModelLoadError", "encode",
    "load_model", "model_choices", "model_config", "preset_config",
    "compare_implementations", "time_modules",
]
