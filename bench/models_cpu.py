"""MiniLM on 128 tokens on the CPU: every layer's and head's map (6 x 12) and the per-layer costs,
after the model is cached. Target: at most 3 s.

What one Models-page refresh needs from the library: `capture_attention` (tokenise, one eager
forward pass with output_attentions, the (6, 12, 128, 128) weights as numpy) and `layer_costs`
with `model_flops`. Also timed, for reference: the cold load, the same forward without weights,
the hooked q/k/v capture of all layers, and the rollout.

    python -m bench.models_cpu [--repeats 5] [--json]   (from the repo root)
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import transformers

from attn.models import (capture_attention, capture_qkv, layer_costs, load_model, model_flops,
                         rollout)

TOKENS = 128
PARAGRAPH = ("Attention lets every token look at every other token. The cost grows with the square "
             "of the sequence length, so long documents are expensive to read this way. ")


def timed(fn, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs)}


def measure(repeats: int) -> dict:
    start = time.perf_counter()
    loaded = load_model("minilm")
    cold_load_s = time.perf_counter() - start
    text = PARAGRAPH * 8  # longer than 128 tokens: truncated to exactly 128

    def maps_and_costs():
        capture = capture_attention(loaded, text, max_tokens=TOKENS)
        assert capture.attentions.shape == (6, 12, TOKENS, TOKENS)
        layer_costs(loaded.config, capture.seq_len)
        model_flops(loaded.config, capture.seq_len)
        return capture

    capture = maps_and_costs()  # warm-up: first-call allocations, tokenizer caches
    ids = torch.tensor([loaded.tokenizer(text, truncation=True, max_length=TOKENS)["input_ids"]])

    def forward_only():
        with torch.no_grad():
            loaded.model(input_ids=ids)

    return {
        "model": "minilm",
        "tokens": TOKENS,
        "repeats": repeats,
        "cold_load_s": cold_load_s,
        "maps_and_costs": timed(maps_and_costs, repeats),
        "forward_without_weights": timed(forward_only, repeats),
        "capture_qkv_all_layers": timed(lambda: capture_qkv(loaded, text, max_tokens=TOKENS), repeats),
        "rollout": timed(lambda: rollout(capture.attentions), repeats),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"MiniLM, {TOKENS} tokens, torch {result['torch']}, transformers {result['transformers']}, "
          f"{result['threads']} threads")
    print(f"cold load: {result['cold_load_s']:.2f} s")
    for key in ("maps_and_costs", "forward_without_weights", "capture_qkv_all_layers", "rollout"):
        r = result[key]
        print(f"{key:26s} median {r['median_s'] * 1e3:8.1f} ms  (min {r['min_s'] * 1e3:.1f}, "
              f"max {r['max_s'] * 1e3:.1f})")


if __name__ == "__main__":
    main()
