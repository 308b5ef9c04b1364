"""Real transformers models: load them without network, capture their attention, count and time
their cost layer by layer.

    loaded = load_model("minilm")                       # or a preset name, or a local directory
    cap = capture_attention(loaded, "The cat sat.")     # (layers, heads, T, T) weights
    qkv = capture_qkv(loaded, long_text)                 # q, k, v + AttentionSpec per layer
    # attn.maps.pooled_map(layer.q, layer.k, layer.spec, layer.variant, 0, head, 512) for any layer
    costs = layer_costs(loaded.config, seq_len=cap.seq_len)
    serving = serving_curve(load_model("llama-gqa"), contexts=[128, 512])  # TTFT, decode, KV cache
    train = attention_train_step(loaded, seq_lens=[128, 256])  # the attention layers' train step
    report = evaluate_plan("minilm", "0-4:sliding_window:16", kv_heads=1)  # a plan: saved and lost

transformers is imported only when a model or config is first needed.
"""
from attn.models.capture import (Capture, LayerQKV, QKVCapture, attention_modules, capture_attention,
                                 capture_qkv, captured_qkv, rollout)
from attn.models.costs import (CONVENTION, KAPLAN_CONVENTION, LayerCost, ModelFlops, ModelShape,
                               ParamCount, kaplan_convention_flops_per_token, kaplan_flops_per_token,
                               kv_cache_curve, layer_costs, model_flops, model_shape, param_count)
from attn.models.report import model_json
from attn.models.load_checks import BadModelConfig, ModelDoesNotFit
from attn.models.sources import (DEFAULT_MODEL, IMPLEMENTATIONS, PRESETS, LoadedModel, ModelLoadError,
                                 encode, load_model, model_choices, model_config, preset_config)
from attn.models.lengths import measured_points
from attn.models.serving import (CACHE_CONVENTION, DEFAULT_CONTEXTS, SERVING_CONVENTION, cache_bytes,
                                 decode_unsupported, serving_curve)
from attn.models.timing import compare_implementations, time_modules
from attn.models.plan import LayerPlan, Plan, apply_plan, parse_plan, plan_for
from attn.models.plan_costs import plan_flops, plan_kv_cache
from attn.models.plan_quality import embedding_drift, plan_drift, sentence_embeddings
from attn.models.plan_report import evaluate_plan
from attn.models.training import (DEFAULT_SEQ_LENS, TRAIN_STEP_CONVENTION, attention_train_step,
                                  train_step_bytes_estimate)

__all__ = [
    "Capture", "LayerQKV", "QKVCapture", "attention_modules", "capture_attention", "capture_qkv",
    "captured_qkv", "rollout",
    "CONVENTION", "KAPLAN_CONVENTION", "LayerCost", "ModelFlops", "ModelShape", "ParamCount",
    "kaplan_convention_flops_per_token", "kaplan_flops_per_token", "kv_cache_curve", "layer_costs",
    "model_flops", "model_shape", "param_count",
    "model_json", "BadModelConfig", "ModelDoesNotFit",
    "DEFAULT_MODEL", "IMPLEMENTATIONS", "PRESETS", "LoadedModel", "ModelLoadError", "encode",
    "load_model", "model_choices", "model_config", "preset_config",
    "CACHE_CONVENTION", "DEFAULT_CONTEXTS", "SERVING_CONVENTION", "cache_bytes", "decode_unsupported",
    "measured_points", "serving_curve",
    "compare_implementations", "time_modules",
    "DEFAULT_SEQ_LENS", "TRAIN_STEP_CONVENTION", "attention_train_step", "train_step_bytes_estimate",
    "LayerPlan", "Plan", "apply_plan", "parse_plan", "plan_for", "plan_flops", "plan_kv_cache",
    "embedding_drift", "plan_drift", "sentence_embeddings", "evaluate_plan",
]
