"""The Planner page's work: a plan evaluated in the worker (tasks.plan_task), every evaluated plan
kept in the session and saved as a run of kind "plan", and the rows its table and frontier show."""
from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from attn import tasks
from attn.economics import frontier
from ui import follow
from ui import format as fmt
from ui import results

EVALUATING = "pl_evaluate"  # the follow key of the running evaluation
PLANS = "pl_plans"  # session: every evaluated plan, newest last
SHOWN = "pl_shown"  # widget key: the plan whose cards and maps are shown
KEPT_PLANS = 24  # plans kept in the session; each carries its maps (2 x L x H x 64 x 64 floats at most)
MAP_TOKENS = 64
COSTS = {  # frontier x axis: label, and how to read it from a plan's result
    "attention FLOPs": lambda r: r["flops"]["totals"]["attention_core_flops"],
    "KV cache at 8k": lambda r: kv_at(r, 8192)["bytes"],
}


def share(fraction: float) -> str:
    """A saved fraction as a percentage (negative: the plan costs more than the base)."""
    return f"{fraction:.1%}"


def kv_at(result: dict, context: int) -> dict:
    """The KV cache row of one context (plan_kv_cache's contexts)."""
    return next(row for row in result["kv_cache"]["contexts"] if row["context"] == context)


def evaluate(source: str, layers: str, kv_heads: int | None, activation: str | None, text: str | None,
             max_tokens: int, measure: bool) -> None:
    """Queue the plan in the worker; `follow_evaluation` picks its result up, after a rerun too."""
    follow.start(EVALUATING, follow.job(tasks.plan_task, source, layers, kv_heads, activation, text, max_tokens,
                                        5, measure, MAP_TOKENS, kind="plan", title=f"{source}: {layers}"))


def follow_evaluation() -> dict | None:
    """Wait for the evaluation (a bar and Cancel); a bad plan's one line is shown as an error.
    The finished plan is kept in the session and saved to the run store; returns it."""
    view = follow.follow(EVALUATING, "Evaluating the plan")
    if view is None or not view.ok:
        return None
    return keep(view.result)


def label(result: dict) -> str:
    plan = result["plan"]["plan"]
    return plan if result["model"]["name"] in plan else f"{result['model']['name']}: {plan}"


def keep(result: dict) -> dict:
    """Store the evaluated plan (one entry per model and plan: the newest wins) and save it."""
    maps = result.pop("maps", None)
    m = result["model"]
    spec = {"model": m["name"], "seq": result["seq_len"], "heads": m["heads"],
            "kv_heads": result["kv_cache"]["kv_heads"], "head_dim": m["head_dim"], "device": "cpu"}
    saved = {"before": maps["before"], "after": maps["after"]} if maps else None
    run_id = results.save_run("plan", spec, result, variant=result["plan"]["plan"], maps=saved)
    entry = {"label": label(result), "model": m["name"], "result": result, "maps": maps, "run_id": run_id}
    plans = [p for p in st.session_state.get(PLANS, []) if p["label"] != entry["label"]] + [entry]
    st.session_state[PLANS] = plans[-KEPT_PLANS:]
    st.session_state[SHOWN] = entry["label"]
    return entry


def plans() -> list[dict]:
    return st.session_state.get(PLANS, [])


def table_rows(entries: list[dict]) -> list[dict[str, Any]]:
    """One row per plan for st.dataframe: what it saves and what it costs, '—' where not measured."""
    rows = []
    for e in entries:
        r = e["result"]
        q, t, d = r["quality"], r.get("timing"), r.get("decode") or {}
        rows.append({
            "plan": e["label"], "tokens": r["seq_len"],
            "attention FLOPs saved": share(r["flops"]["totals"]["attention_core_flops_saved"]),
            "KV per token": fmt.nbytes(r["kv_cache"]["bytes_per_token"]),
            "KV at 8k saved": share(kv_at(r, 8192)["saved"]),
            "mean cosine": f"{q['mean_cosine']:.4f}" if q["measured"] else "cost only",
            "Spearman": f"{q['spearman']:.4f}" if q["measured"] else "—",
            "prefill plan / base": f"{fmt.ms(t['forward_ms'])} / {fmt.ms(t['base_forward_ms'])}" if t else "not timed",
            "decode per token": (f"{fmt.ms(d['decode_ms'])} / {fmt.ms(d['base_decode_ms'])}" if d.get("measured")
                                 else "—"),
            "run": f"#{e['run_id']}" if e["run_id"] is not None else "not saved"})
    return rows


def frontier_points(entries: list[dict], cost: str) -> list[dict]:
    """The plans with a measured quality, and the base model (cosine 1 by definition), as points
    of `cost` against mean cosine, marked dominated or not (economics.frontier, lower 1 - cosine
    and lower cost win)."""
    read = COSTS[cost]
    measured = [e for e in entries if e["result"]["quality"]["measured"]]
    if not measured:
        return []
    items = [(e["label"], e["result"]["quality"]["mean_cosine"], read(e["result"])) for e in measured]
    base = measured[-1]["result"]
    base_cost = (base["flops"]["totals"]["base_attention_core_flops"] if cost == "attention FLOPs"
                 else kv_at(base, 8192)["base_bytes"])
    items.append((f"{base['model']['name']} (base)", 1.0, base_cost))
    marked = frontier((name, 1.0 - quality, c) for name, quality, c in items)
    return [{"label": m.label, "quality": 1.0 - m.error, "cost": m.cost, "dominated": m.dominated,
             "dominated_by": m.dominated_by, "base": i == len(items) - 1} for i, m in enumerate(marked)]


def layer_map(maps: dict, which: str, layer: int, head: int | None) -> np.ndarray:
    """One layer's map, before or after: a head's, or the mean over heads (head None)."""
    values = np.asarray(maps[which][layer])
    return values.mean(0) if head is None else values[head]
