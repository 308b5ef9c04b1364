"""A plan evaluated: what it saves (FLOPs, KV cache), what it costs in quality (MiniLM), and its
measured prefill time, and per-token decode time for decoders, each against the unmodified model.

Both models run transformers' eager attention path: the base under "eager", the plan under its
registered function, which materialises the scores the same way, so the times differ by what
the plan changes and not by a kernel (SDPA would time a fused kernel against an unfused one).
"""
from __future__ import annotations

import statistics
from typing import Callable

from attn.models.costs import model_shape
from attn.models.plan import IMPLEMENTATION, apply_plan, plan_for
from attn.models.plan_costs import KV_CONTEXTS, plan_flops, plan_kv_cache
from attn.models.plan_quality import plan_drift
from attn.models.sentences import PASSAGES, SENTENCES
from attn.models.serving import serving_curve
from attn.models.sources import DEFAULT_MODEL, PRESETS, LoadedModel, encode, load_model
from attn.models.timing import time_modules

DEFAULT_TEXT = " ".join(SENTENCES)
TIMING_CONVENTION = ("median of repeated forward passes over the text (batch 1) with per-module "
                     "hooks (attn.models.time_modules), in rounds where base and plan take turns, base under transformers' eager attention, the "
                     "plan under its registered function (both materialise the scores)")
PRESET_QUALITY = ("presets have random weights: their embeddings mean nothing, so a plan on a preset "
                  "shows its cost only")
DIRECTORY_QUALITY = ("quality is measured on MiniLM, whose sentence embeddings attn knows how to pool; "
                     "for other models the plan shows its cost only")


def evaluate_plan(source: str, layers: str, kv_heads: int | None = None, activation: str | None = None,
                  text: str | None = None, max_tokens: int = 128, repeats: int = 5,
                  decode_steps: int = 8, measure: bool = True,
                  progress: Callable[[float, str], None] | None = None) -> dict:
    """Everything `attn plan` prints. `measure=False` leaves out the measured times (costs and
    quality only). A bad plan raises ValueError with one line that says what to change.
    `progress(fraction, what)` hears each stage as it starts (a worker job's bar)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    step = progress or (lambda fraction, what: None)
    step(0.0, f"{source}: loading the model")
    base = load_model(source, "eager")
    shape = model_shape(base.config)
    plan = plan_for(base, layers, kv_heads, activation)
    planned = apply_plan(base, plan)
    ids, tokens = encode(base, text or DEFAULT_TEXT, max_tokens)
    seq_len = int(ids.shape[1])
    result = {
        "model": {"name": base.name, "source": base.source, "kind": base.kind, "layers": shape.layers,
                  "heads": shape.heads, "kv_heads": shape.kv_heads, "head_dim": shape.head_dim,
                  "window": shape.window},
        "plan": plan.to_dict(), "seq_len": seq_len,
        "flops": plan_flops(base.config, plan, seq_len),
        "kv_cache": plan_kv_cache(base.config, plan, KV_CONTEXTS),
    }
    step(0.1, "quality: the embeddings' drift, plan against base" if base.name == DEFAULT_MODEL
         else "quality: not measured for this model")
    result["quality"] = quality(base, planned)
    if measure:
        step(0.5, f"prefill of {seq_len} tokens timed, base and plan in turns")
        result["timing"] = prefill_times(base, planned, ids, repeats)
        step(0.8, "decode steps timed" if base.kind == "decoder" else "decode: an encoder has none")
        result["decode"] = decode_times(base, planned, seq_len, decode_steps, repeats)
    return result


def quality(base: LoadedModel, planned: LoadedModel) -> dict:
    """The embedding drift on MiniLM; for any other model, why there is none."""
    if base.name != DEFAULT_MODEL:
        return {"measured": False, "reason": PRESET_QUALITY if base.name in PRESETS else DIRECTORY_QUALITY}
    def drift(texts) -> dict:
        lengths = sorted(len(base.tokenizer(s)["input_ids"]) for s in texts)
        return {**plan_drift(base, planned, texts), "tokens_min": lengths[0],
                "tokens_median": lengths[len(lengths) // 2], "tokens_max": lengths[-1]}

    # the sentences (the set) at the top level; the longer passages beside them
    return {"measured": True, **drift(SENTENCES), "passages": drift(PASSAGES)}


def prefill_times(base: LoadedModel, planned: LoadedModel, ids, repeats: int, rounds: int = 3) -> dict:
    """Measured forward (prefill) time of the text, plan and base, and their attention's share.

    The repeats are split into `rounds`, base and plan taking turns (base first, then plan first),
    so that a change in the machine's load falls on both: each figure is the median of its
    rounds' medians, with the rounds' lowest and highest beside it."""
    rounds = max(1, min(rounds, repeats))
    per_round = -(-repeats // rounds)
    seen: dict[str, dict[str, list[float]]] = {n: {"forward_ms": [], "attention_ms": []} for n in ("base", "plan")}
    for r in range(rounds):
        order = (("base", base), ("plan", planned))
        for name, loaded in (order if r % 2 == 0 else order[::-1]):
            with loaded.lock:
                timed = time_modules(loaded, ids, repeats=per_round, measure_memory=False)
            for key in seen[name]:
                seen[name][key].append(timed[key])
    rows = {name: {key: statistics.median(values) for key, values in parts.items()}
            | {"forward_ms_rounds_min": min(parts["forward_ms"]), "forward_ms_rounds_max": max(parts["forward_ms"])}
            for name, parts in seen.items()}
    return {"seq_len": int(ids.shape[1]), "repeats": per_round * rounds, "rounds": rounds, "device": base.device,
            "forward_ms": rows["plan"]["forward_ms"], "base_forward_ms": rows["base"]["forward_ms"],
            "attention_ms": rows["plan"]["attention_ms"], "base_attention_ms": rows["base"]["attention_ms"],
            "plan": rows["plan"], "base": rows["base"], "convention": TIMING_CONVENTION}


def decode_times(base: LoadedModel, planned: LoadedModel, context: int, steps: int, repeats: int) -> dict:
    """Per-token decode time at the text's length, plan and base (serving_curve); encoders none."""
    if base.kind != "decoder":
        return {"measured": False, "reason": "an encoder keeps no KV cache and has no decode step"}
    curves = {name: serving_curve(loaded, [context], steps=steps, repeats=min(repeats, 3), budget_s=60.0,
                                  implementation=impl)
              for name, loaded, impl in (("base", base, "eager"), ("plan", planned, IMPLEMENTATION))}
    points = {name: curve["points"][0] for name, curve in curves.items()}
    if any(p.get("status") != "ok" for p in points.values()):
        return {"measured": False, "reason": "; ".join(f"{n}: {p.get('status')}" for n, p in points.items()
                                                       if p.get("status") != "ok")}
    return {"measured": True, "context": points["plan"]["context"], "steps": steps,
            "decode_ms": points["plan"]["decode_ms"], "base_decode_ms": points["base"]["decode_ms"],
            "prefill_ms": points["plan"]["prefill_ms"], "base_prefill_ms": points["base"]["prefill_ms"],
            "cache_bytes": points["plan"]["cache_bytes_end"], "base_cache_bytes": points["base"]["cache_bytes_end"],
            "convention": curves["plan"]["convention"]}


def human_summary(d: dict) -> str:
    """evaluate_plan's result in a few lines, for the terminal."""
    m, f, kv = d["model"], d["flops"]["totals"], d["kv_cache"]
    lines = [f"{m['name']} ({m['kind']}, {m['layers']} layers, {m['heads']} heads): plan {d['plan']['plan']}",
             f"at {d['seq_len']} tokens: attention core {f['attention_core_flops'] / 1e9:.4f} GFLOP "
             f"(base {f['base_attention_core_flops'] / 1e9:.4f}, {f['attention_core_flops_saved']:.1%} saved), "
             f"whole layers {f['total_flops'] / 1e9:.4f} GFLOP ({f['total_flops_saved']:.1%} saved)",
             f"KV {kv['bytes_per_token']:,} bytes per token (base {kv['base_bytes_per_token']:,}); "
             + ", ".join(f"{r['context'] // 1024}k {r['saved']:.0%} saved" for r in kv["contexts"])]
    q = d["quality"]
    lines.append(f"quality on {q['sentences']} sentences ({q['tokens_min']}-{q['tokens_max']} tokens): mean cosine {q['mean_cosine']:.4f} (min "
                 f"{q['min_cosine']:.4f}), Spearman of pairwise similarities {q['spearman']:.4f}"
                 if q["measured"] else f"quality: {q['reason']}")
    if q["measured"]:
        p = q["passages"]
        lines.append(f"  on {p['sentences']} passages ({p['tokens_min']}-{p['tokens_max']} tokens): mean cosine "
                     f"{p['mean_cosine']:.4f} (min {p['min_cosine']:.4f}), Spearman {p['spearman']:.4f}")
    if "timing" in d:
        t = d["timing"]
        lines.append(f"measured forward {t['forward_ms']:.2f} ms (base {t['base_forward_ms']:.2f} ms), "
                     f"attention {t['attention_ms']:.2f} ms (base {t['base_attention_ms']:.2f} ms) on {t['device']}")
        dec = d["decode"]
        lines.append(f"decode {dec['decode_ms']:.3f} ms per token (base {dec['base_decode_ms']:.3f} ms) at "
                     f"context {dec['context']}" if dec["measured"] else f"decode: {dec['reason']}")
    if "run_id" in d:
        lines.append(f"saved as run #{d['run_id']}")
    return "\n".join(lines)
