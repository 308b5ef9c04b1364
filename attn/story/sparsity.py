"""Chapter 3, sparsity: a sliding window and a block-sparse layout on MiniLM's own queries, keys
and values (every layer, one paragraph), against exact attention: the pairs and useful FLOPs they
skip (attn.cost), how far each layer's output moves (approx_error: ||out - exact|| / ||exact||
in float64, attn.accuracy), and, for two of them applied to every layer as a plan
(attn.models.plan), how far MiniLM's sentence embeddings move (mean cosine to the base, on the
sentences attn ships; attn.models.plan_quality)."""
from __future__ import annotations

from typing import Callable

from attn.story.common import where

# (label, variant, its parameters, the same layout as a plan of every layer, or None)
LAYOUTS = (
    ("window 8", "sliding_window", {"window": 8}, None),
    ("window 16", "sliding_window", {"window": 16}, "0-5:sliding_window:16"),
    ("window 32", "sliding_window", {"window": 32}, None),
    ("blocks of 8", "block_sparse", {"block": 8, "n_global": 1, "n_random": 1}, None),
    ("blocks of 16", "block_sparse", {"block": 16, "n_global": 1, "n_random": 1}, "0-5:block_sparse:16"),
)
ERROR_NOTE = "‖out − exact‖ / ‖exact‖ in float64, the mean over MiniLM's 6 layers"


def measure_sparsity(report: Callable[[float, str], None] | None = None) -> dict:
    from attn import variants
    from attn.accuracy import errors
    from attn.cost import attention_cost
    from attn.models import (apply_plan, capture_qkv, embedding_drift, load_model, plan_for,
                             sentence_embeddings)
    from attn.models.sentences import PASSAGES

    here = where()
    if report:
        report(0.05, "MiniLM's queries, keys and values on a paragraph")
    loaded = load_model("minilm", "eager", "cpu")
    text = PASSAGES[0]
    captured = capture_qkv(loaded, text)
    exact = attention_cost(captured.layers[0].spec, "dense")
    rows = []
    for i, (label, name, params, plan) in enumerate(LAYOUTS):
        if report:
            report(0.1 + 0.4 * i / len(LAYOUTS), f"{label} on every layer")
        moved = []
        for layer in captured.layers:
            spec = layer.spec.with_(**params)
            out = variants.get(name).run(layer.q, layer.k, layer.v, spec)
            moved.append(errors(out, layer.q, layer.k, layer.v, spec, name)[1])
        cost = attention_cost(captured.layers[0].spec.with_(**params), name)
        rows.append({"label": label, "variant": name, "params": params, "plan": plan,
                     "pairs": cost.pairs, "full_pairs": cost.full_pairs, "flops": cost.flops,
                     "output_moved": sum(moved) / len(moved), "moved_by_layer": moved})
    if report:
        report(0.55, "sentence embeddings, base and planned")
    base = sentence_embeddings(loaded)
    for row in rows:
        if row["plan"]:
            planned = apply_plan(loaded, plan_for(loaded, row["plan"]))
            row["drift"] = embedding_drift(base, sentence_embeddings(planned))
    return {**here, "model": "all-MiniLM-L6-v2", "tokens": len(captured.tokens), "text": text,
            "exact_pairs": exact.pairs, "exact_flops": exact.flops, "layouts": rows,
            "error_note": ERROR_NOTE}


def _best(rows: list[dict]) -> dict:
    """The layout that moves the output least per pair kept."""
    return min(rows, key=lambda r: r["output_moved"])


def sparsity_sentences(r: dict) -> list[str]:
    rows = {row["label"]: row for row in r["layouts"]}
    window, blocks = rows["window 16"], rows["blocks of 16"]
    best = _best(r["layouts"])

    def skipped(row: dict) -> str:
        return f"{1 - row['pairs'] / row['full_pairs']:.0%}"

    said = [
        f"On a {r['tokens']}-token paragraph, a window of 16 tokens on each side skips {skipped(window)} "
        f"of the pairs (and of the useful FLOPs), but moves each layer's output by "
        f"{window['output_moved']:.0%} on average: it cuts heads off from the first token and from "
        "words further away.",
        f"Blocks of 16 tokens, with one block everyone sees and one random block, skip "
        f"{skipped(blocks)} and move the output by {blocks['output_moved']:.0%}. Of the {len(r['layouts'])} layouts "
        f"tried, {best['label']} moved it least ({best['output_moved']:.0%}, skipping {skipped(best)}).",
    ]
    if window.get("drift") and blocks.get("drift"):
        said.append(
            "What a user sees is the sentence embedding: applied to all six layers, the window keeps "
            f"a cosine of {window['drift']['mean_cosine']:.4f} to the original model's, the blocks "
            f"{blocks['drift']['mean_cosine']:.4f} (1 is unchanged), on {window['drift']['sentences']} "
            "sentences.")
    return said


def sparsity_numbers(r: dict) -> list[tuple[str, str]]:
    rows = [(row["label"],
             f"{row['pairs'] / row['full_pairs']:.0%} of exact attention's pairs · output moved "
             f"{row['output_moved']:.1%}" + (f" · embedding cosine {row['drift']['mean_cosine']:.4f}"
                                              if row.get("drift") else ""))
            for row in r["layouts"]]
    return rows + [("paragraph", f"{r['tokens']} tokens, {r['model']}"), ("output moved", r["error_note"]),
                   ("pairs", f"{r['exact_pairs']:,} per head for exact attention (not causal)")]
