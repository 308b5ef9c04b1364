"""What a plan saves, counted from the config: FLOPs per layer and in total, and the KV cache per
token and at contexts from 1k to 128k, each beside the unmodified model.

FLOPs follow attn.models.costs.CONVENTION (useful FLOPs of the attention core from
attn.cost.attention_cost with the layer's variant, projections 2*B*S*d*(2H+2KVH)*D, MLP as it is).
The activation does not change the count: sigmoid and relu replace the softmax's exponentials,
which no convention here counts, and keep both matmuls.
"""
from __future__ import annotations

from attn.cost import attention_cost, proj_flops
from attn.models.costs import CONVENTION, layer_costs, model_shape
from attn.models.plan import LayerPlan, Plan

KV_CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
KV_CONVENTION = ("keys and values of every layer, 2 * kv_heads * head_dim * bytes per token and layer, "
                 "at {bytes} bytes an element; decoders: the cache after C tokens, a sliding-window "
                 "layer keeping its last W; encoders keep no cache between calls: the keys and values "
                 "one forward over C tokens holds, all C of them in every layer (a window narrows which "
                 "keys a query reads, not which are computed), past the model's positions a what-if")


def layer_variant(shape, layer: LayerPlan, seq_len: int, kv_heads: int, batch: int = 1):
    """(AttentionSpec, attn variant name) of one planned layer's attention over `seq_len` tokens."""
    spec = shape.spec(seq_len, batch).with_(kv_heads=kv_heads)
    if layer.kind == "sliding_window":
        window = min(layer.param, shape.window) if shape.window else layer.param
        return spec.with_(window=window), "sliding_window"
    if layer.kind == "block_sparse":
        return spec.with_(block=layer.param), "block_sparse"
    return spec, shape.variant


def layer_window(shape, layer: LayerPlan) -> int | None:
    """The keys a decoder's cache keeps for this layer: its window, or None for all of them."""
    if layer.kind == "sliding_window":
        return min(layer.param, shape.window) if shape.window else layer.param
    return shape.window  # full and block_sparse layers keep every key (later blocks may need it)


def plan_flops(config, plan: Plan, seq_len: int, batch: int = 1) -> dict:
    """Per layer and in total: attention core, projections, MLP and their sum, plan and base."""
    shape = model_shape(config)
    kv = plan.kv_heads or shape.kv_heads
    rows = []
    for base, layer in zip(layer_costs(config, seq_len, batch), plan.layers):
        spec, variant = layer_variant(shape, layer, seq_len, kv, batch)
        core = attention_cost(spec, variant).flops
        proj = proj_flops(spec)
        rows.append({"layer": base.layer, "plan": str(layer), "variant": variant,
                     "attention_core_flops": core, "base_attention_core_flops": base.attention_core_flops,
                     "projection_flops": proj, "base_projection_flops": base.projection_flops,
                     "mlp_flops": base.mlp_flops,
                     "total_flops": core + proj + base.mlp_flops, "base_total_flops": base.total_flops})
    keys = ("attention_core_flops", "projection_flops", "total_flops")
    totals = {k: sum(r[k] for r in rows) for k in (*keys, *(f"base_{k}" for k in keys), "mlp_flops")}
    for k in keys:
        totals[f"{k}_saved"] = 1 - totals[k] / totals[f"base_{k}"] if totals[f"base_{k}"] else 0.0
    return {"seq_len": seq_len, "batch": batch, "layers": rows, "totals": totals, "convention": CONVENTION}


def plan_kv_cache(config, plan: Plan, contexts=KV_CONTEXTS, dtype_bytes: int = 2) -> dict:
    """KV bytes per token (every layer, no window) and at each context, plan and base."""
    shape = model_shape(config)
    kv = plan.kv_heads or shape.kv_heads
    decoder = shape.kind == "decoder"
    per_layer = 2 * shape.head_dim * dtype_bytes  # a key and a value of one head

    def cached(window: int | None, context: int) -> int:
        return min(context, window) if decoder and window else context

    rows = []
    for context in contexts:
        if context < 1:
            raise ValueError(f"contexts must be at least 1, got {context}")
        plan_bytes = sum(per_layer * kv * cached(layer_window(shape, x), context) for x in plan.layers)
        base_bytes = shape.layers * per_layer * shape.kv_heads * cached(shape.window, context)
        rows.append({"context": context, "bytes": plan_bytes, "base_bytes": base_bytes,
                     "saved": 1 - plan_bytes / base_bytes})
    return {"kind": shape.kind, "kv_heads": kv, "base_kv_heads": shape.kv_heads, "dtype_bytes": dtype_bytes,
            "bytes_per_token": shape.layers * per_layer * kv,
            "base_bytes_per_token": shape.layers * per_layer * shape.kv_heads,
            "contexts": rows, "convention": KV_CONVENTION.format(bytes=dtype_bytes)}
