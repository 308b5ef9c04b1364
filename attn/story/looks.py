"""Chapter 2, what attention looks at: every head of MiniLM (all-MiniLM-L6-v2, shipped offline)
on one sentence, read with attn.head_statistics: how many tokens hold 90% of a head's weight,
its entropy against a head that spreads its weight evenly, and the weight on the first token."""
from __future__ import annotations

import math
from typing import Callable

from attn.story.common import where

SENTENCE = ("The animal didn't cross the street because it was too tired, so it lay down on the "
            "warm pavement and slept.")
MODEL = "minilm"


def measure_looks(report: Callable[[float, str], None] | None = None, text: str = SENTENCE) -> dict:
    import torch

    from attn.head_statistics import block_sums
    from attn.models import capture_attention, load_model

    here = where()
    if report:
        report(0.1, "loading MiniLM (offline)")
    loaded = load_model(MODEL, "eager", "cpu")  # weights are returned by eager only (capture.py)
    if report:
        report(0.6, "MiniLM reads the sentence")
    cap = capture_attention(loaded, text)
    tokens = cap.seq_len
    positions = torch.arange(tokens)
    visible = torch.full((tokens,), tokens)  # an encoder: every token sees every token
    keys, entropy, sink, itself = [], [], [], []
    for layer in range(cap.layers):
        row_keys, row_entropy, row_sink, row_itself = [], [], [], []
        for head in range(cap.heads):
            w = torch.from_numpy(cap.attentions[layer, head]).double()
            stats = block_sums(w, positions, visible).finish(head, head, 1)
            row_keys.append(stats.keys_for_90)
            row_entropy.append(stats.entropy_bits)
            row_sink.append(stats.sink_mass)
            row_itself.append(stats.diagonal_mass)
        keys.append(row_keys)
        entropy.append(row_entropy)
        sink.append(row_sink)
        itself.append(row_itself)
    flat = [(keys[i][h], i, h) for i in range(cap.layers) for h in range(cap.heads)]
    _, sharp_layer, sharp_head = min(flat)
    return {**here, "model": "all-MiniLM-L6-v2", "text": text, "tokens": list(cap.tokens),
            "keys_for_90": keys, "entropy_bits": entropy, "sink_mass": sink, "diagonal_mass": itself,
            "sharpest": {"layer": sharp_layer, "head": sharp_head,
                         "weights": cap.attentions[sharp_layer, sharp_head].tolist()}}


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def looks_sentences(r: dict) -> list[str]:
    n = len(r["tokens"])
    keys = [k for row in r["keys_for_90"] for k in row]
    entropy = [e for row in r["entropy_bits"] for e in row]
    sink = [s for row in r["sink_mass"] for s in row]
    few = sum(k <= n / 4 for k in keys)
    sharp = r["sharpest"]
    sharp_keys = r["keys_for_90"][sharp["layer"]][sharp["head"]]
    what, mass = _pattern(r, sharp)
    return [
        f"MiniLM read a sentence of {n} tokens with {len(keys)} attention heads. The typical head "
        f"needs {_median(keys):.1f} of the {n} tokens to hold 90% of its attention, and {few} of "
        f"the {len(keys)} heads need a quarter of the tokens or fewer.",
        f"Their entropy is {_median(entropy):.1f} bits for the typical head, against "
        f"{math.log2(n):.1f} bits for a head that spread its attention evenly: most heads look at "
        "a few tokens, not at everything.",
        f"The sharpest head (layer {sharp['layer']}, head {sharp['head']}) puts 90% of its weight on "
        f"{sharp_keys:.1f} tokens: {what} ({mass:.0%} of its weight); on average {sum(sink) / len(sink):.0%} of a head's weight lands on "
        "the first token, [CLS], a resting place for attention with nothing better to do.",
    ]


def _pattern(r: dict, sharp: dict) -> tuple[str, float]:
    """What the sharpest head looks at, in words, and the mean weight it puts there: the token
    before, the token after, itself, or [CLS], whichever holds the most."""
    w = sharp["weights"]
    n = len(w)
    before = sum(w[i][i - 1] for i in range(1, n)) / max(n - 1, 1)
    after = sum(w[i][i + 1] for i in range(n - 1)) / max(n - 1, 1)
    candidates = [("each token looks at the one before it", before),
                  ("each token looks at the one after it", after),
                  ("each token looks at itself", r["diagonal_mass"][sharp["layer"]][sharp["head"]]),
                  ("every token looks at [CLS]", r["sink_mass"][sharp["layer"]][sharp["head"]])]
    return max(candidates, key=lambda c: c[1])


def looks_numbers(r: dict) -> list[tuple[str, str]]:
    keys = [k for row in r["keys_for_90"] for k in row]
    return [("model", r["model"] + " (6 layers × 12 heads), on the CPU"),
            ("sentence", r["text"]), ("tokens", str(len(r["tokens"]))),
            ("tokens for 90% of the weight, median head", f"{_median(keys):.1f}"),
            ("fewest, most", f"{min(keys):.1f}, {max(keys):.1f}"),
            ("convention", "keys for 90%: per query row, the fewest keys holding 90% of its weight, "
                           "averaged over rows (attn.head_statistics)")]
