"""`attn model` and `attn plan`: a real model on a text (tokens, maps, cost per layer), and a plan
for its attention (what it saves and what it costs)."""
from __future__ import annotations

import argparse

from attn.cli_args import BadInput
from attn.cli_output import emit


def cmd_model(args: argparse.Namespace) -> None:
    from attn.models import model_json

    if args.max_tokens is not None and args.max_tokens < 1:
        raise BadInput(f"--max-tokens must be at least 1, got {args.max_tokens}")
    data = model_json(args.model, args.text, max_tokens=args.max_tokens, include_maps=not args.no_maps)
    emit(args, data, _human_model)


def _human_model(d: dict) -> str:
    m, lines = d["model"], []
    lines.append(f"{m['name']}: {m['source']} ({m['num_parameters']:,} parameters, {m['kind']})")
    lines.append(f"{d['seq_len']} tokens: {' '.join(d['tokens'])}")
    costs = d.get("costs", {})
    if "error" in costs:
        lines.append(f"costs: {costs['error']}")
    else:
        t = costs["totals"]
        lines.append(f"forward {t['total_flops'] / 1e9:.3f} GFLOP over {t['layers']} layers: attention core "
                     f"{t['attention_core_flops'] / t['total_flops']:.1%}, projections "
                     f"{t['projection_flops'] / t['total_flops']:.1%}, MLP {t['mlp_flops'] / t['total_flops']:.1%}")
    timing = d.get("timing", {})
    if "forward_ms" in timing:
        lines.append(f"measured forward {timing['forward_ms']:.2f} ms on {timing['device']}: attention "
                     f"{timing['attention_ms']:.2f} ms, MLP {timing['mlp_ms']:.2f} ms")
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> None:
    from attn.models.plan_report import evaluate_plan, human_summary

    for flag, value in (("--max-tokens", args.max_tokens), ("--repeats", args.repeats)):
        if value < 1:
            raise BadInput(f"{flag} must be at least 1, got {value}")
    data = evaluate_plan(args.model, args.layers, kv_heads=args.kv_heads, activation=args.activation,
                         text=args.text, max_tokens=args.max_tokens, repeats=args.repeats,
                         measure=not args.no_timing)
    if args.save:
        from attn.runs import RunStore

        m = data["model"]
        spec = {"model": m["name"], "seq": data["seq_len"], "heads": m["heads"],
                "kv_heads": data["kv_cache"]["kv_heads"], "head_dim": m["head_dim"], "device": "cpu"}
        data["run_id"] = RunStore().save("plan", spec, data, variant=data["plan"]["plan"])
    emit(args, data, human_summary)
