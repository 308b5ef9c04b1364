"""Serving a decoder: time to first token and per-token decode time of the whole model with
transformers' own KV cache, against context, and the bytes that cache holds.

At each context C, on seeded random token ids (the cost does not depend on which tokens):
- time to first token (TTFT): the prefill, one forward over C tokens with `use_cache=True` (the
  model makes its DynamicCache), then the LM head on the last position and a greedy pick. The
  median of `repeats` prefills, each with a fresh cache.
- decode: one forward of the picked token against the cache, the LM head and the pick, step after
  step; the first step is a warm-up, the next `steps` are timed one by one: the median per token.
- the cache: the bytes of its key and value tensors after the prefill and after the last step,
  beside `kv_cache_curve`'s prediction at the model's dtype, and the bytes of the storage those
  tensors keep alive. They differ for a sliding window: transformers keeps the last window - 1
  tokens as a view into the step's concatenated keys, so right after a prefill the whole prompt's
  keys stay allocated until the first decode step.

The models are transformers' AutoModel, which has no LM head: the head is timed as the product
with the input embedding matrix (tied, as GPT-2's head is; an untied head has the same shape, so
the same cost). CPU times are perf_counter, GPU times CUDA events.
"""
from __future__ import annotations

import inspect
import time
from typing import Callable, Sequence

import torch

from attn.device import is_out_of_memory
from attn.models.capture import switched_implementation
from attn.models.costs import kv_cache_curve, model_shape
from attn.models.lengths import measure_lengths, measured_points, one_line
from attn.models.sources import LoadedModel
from attn.models.timing import Clock
from attn.readable import nbytes
from attn.timing import summarize

DEFAULT_CONTEXTS = (128, 256, 512, 1024, 2048)
SERVING_CONVENTION = (
    "batch 1, seeded random token ids; TTFT = the prefill (one forward over the context with "
    "use_cache=True, the model's DynamicCache) + the LM head on the last position + a greedy pick, "
    "median of fresh prefills; decode = one token against the cache + the LM head + the pick, median "
    "per step after a warm-up step; the LM head is the input embedding matrix (AutoModel has none)")
CACHE_CONVENTION = ("measured: bytes of the cache's key and value tensors (numel x element size); held: "
                    "bytes of the storage they keep alive; predicted: kv_cache_curve at the model's dtype")


def decode_unsupported(loaded: LoadedModel) -> str | None:
    """Why this model has no decoding to measure, in words; None for a decoder."""
    if loaded.kind == "decoder":
        return None
    return (f"{loaded.name} is an encoder: every token attends to every other token, in both directions, "
            "so it reads a text whole and keeps no KV cache; there is no first token and no decode step "
            "to time. Its cost is the forward pass (measured above) and the train step.")


def serving_contexts(loaded: LoadedModel, contexts: Sequence[int], steps: int) -> tuple[list[int], str]:
    """The contexts that fit the model's positions with `steps` + 1 decode steps after them, and
    a note (empty when none was changed): a context past the limit is replaced by the limit."""
    if not contexts or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in contexts):
        raise ValueError(f"contexts must be whole numbers >= 1, got {list(contexts)}")
    limit = loaded.max_positions
    if limit is None:
        return sorted(set(contexts)), ""
    last = limit - steps - 1  # the last decode step sits at position limit - 1
    if last < 1:
        raise ValueError(f"{loaded.name} has {limit} positions: too few for {steps + 1} decode steps")
    kept = sorted({min(c, last) for c in contexts})
    dropped = sorted(c for c in set(contexts) if c > last)
    note = "" if not dropped else (
        f"{', '.join(map(str, dropped))} left out: {loaded.name} has {limit} positions, so the longest "
        f"context with {steps + 1} decode steps after it is {last}")
    return kept, note


def cache_tensors(cache) -> list[torch.Tensor]:
    """The key and value tensors of a transformers cache, every layer (a tuple cache too)."""
    if hasattr(cache, "layers"):  # transformers >= 4.56: a CacheLayer per layer
        pairs = [(layer.keys, layer.values) for layer in cache.layers]
    elif hasattr(cache, "key_cache"):
        pairs = list(zip(cache.key_cache, cache.value_cache))
    else:
        pairs = [tuple(layer[:2]) for layer in cache]
    return [t for pair in pairs for t in pair if isinstance(t, torch.Tensor)]


def cache_bytes(cache) -> tuple[int, int, int]:
    """(tokens held by the first layer, bytes of the key/value tensors, bytes of the storage they
    keep alive, each storage counted once)."""
    tensors = cache_tensors(cache)
    if not tensors:
        return 0, 0, 0
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return int(tensors[0].shape[-2]), sum(t.numel() * t.element_size() for t in tensors), sum(storages.values())


def _cache_argument(model) -> str:
    """The forward's name for the cache: `cache` from transformers 5, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def serving_curve(loaded: LoadedModel, contexts: Sequence[int] = DEFAULT_CONTEXTS, steps: int = 8,
                  repeats: int = 3, budget_s: float = 60.0, seed: int = 0, implementation: str = "sdpa",
                  on_point: Callable[[dict, float], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> dict:
    """TTFT and per-token decode time of the whole model at each context, and its cache's bytes.

    Returns {model, device, implementation, dtype, timer, steps, repeats, budget_s, note,
    convention, cache_convention, points: [{context, status, seconds, prefill_ms (+ _p10, _p90),
    decode_ms (+ _p10, _p90), decode_step_ms (one per timed step), cached_tokens, cache_bytes,
    cache_held_bytes, cache_bytes_predicted, and the same four after the last step with _end}]}.
    A point that was not measured has its reason as `status` (see attn.models.lengths).
    Raises ValueError (one line) for an encoder or bad sizes.
    """
    reason = decode_unsupported(loaded)
    if reason:
        raise ValueError(reason)
    for name, value in (("steps", steps), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    contexts, note = serving_contexts(loaded, contexts, steps)
    model, config, device = loaded.model, loaded.config, loaded.device
    weight = model.get_input_embeddings().weight  # (vocab, d): the LM head's shape
    dtype_bytes = weight.element_size()
    try:
        shape = model_shape(config)
    except ValueError:  # a family attn has no cost model for: measured only, nothing predicted
        shape = None
    clock, cache_arg = Clock(device), _cache_argument(model)
    generator = torch.Generator().manual_seed(seed)

    def predicted(tokens: int) -> int | None:
        return kv_cache_curve(config, [tokens], dtype_bytes)[0]["bytes"] if shape else None

    def timed(ids: torch.Tensor, cache) -> tuple[float, object, torch.Tensor]:
        clock.sync()
        start = clock.mark()
        out = model(input_ids=ids, use_cache=True, **({cache_arg: cache} if cache is not None else {}))
        token = (out.last_hidden_state[:, -1] @ weight.T).argmax(-1, keepdim=True)  # (1, 1)
        stop = clock.mark()
        clock.sync()
        return clock.elapsed_ms(start, stop), _returned_cache(out), token

    def measure(context: int) -> dict:
        ids = torch.randint(config.vocab_size, (1, context), generator=generator).to(device)
        prefills, cache, token = [], None, None
        for _ in range(repeats):
            cache = token = None  # the last prefill's cache is freed before the next one
            ms, cache, token = timed(ids, None)
            prefills.append(ms)
        held = cache_bytes(cache)
        _, cache, token = timed(token, cache)  # warm-up step
        steps_ms = []
        for _ in range(steps):
            ms, cache, token = timed(token, cache)
            steps_ms.append(ms)
        end = cache_bytes(cache)
        prefill, decode = summarize(prefills, 0, "perf"), summarize(steps_ms, 1, "perf")
        return {"prefill_ms": prefill.median_ms, "prefill_ms_p10": prefill.p10_ms, "prefill_ms_p90": prefill.p90_ms,
                "decode_ms": decode.median_ms, "decode_ms_p10": decode.p10_ms, "decode_ms_p90": decode.p90_ms,
                "decode_step_ms": steps_ms,
                "cached_tokens": held[0], "cache_bytes": held[1], "cache_held_bytes": held[2],
                "cache_bytes_predicted": predicted(context),
                "cached_tokens_end": end[0], "cache_bytes_end": end[1], "cache_held_bytes_end": end[2],
                "cache_bytes_end_predicted": predicted(context + steps + 1)}

    def need_bytes(context: int) -> int:
        """The cache at the last step, the prefill's activations (a few d-wide and one ff-wide
        tensor per token) and one layer's scores, in case the kernel writes them out."""
        tokens = context + steps + 1
        d = config.hidden_size
        ff = shape.ff if shape else 4 * d
        heads = shape.heads if shape else config.num_attention_heads
        layers = config.num_hidden_layers
        cache = predicted(tokens) or 2 * layers * d * tokens * dtype_bytes
        return cache + context * (8 * d + 2 * ff) * dtype_bytes + heads * context * context * dtype_bytes

    started = time.perf_counter()
    with loaded.lock, torch.inference_mode(), switched_implementation(loaded, implementation):
        try:  # first calls pay for lazy set-up (thread pools, kernel choice): not any point's time
            warm = torch.randint(config.vocab_size, (1, min(contexts[0], 64)), generator=generator).to(device)
            _, cache, token = timed(warm, None)
            timed(token, cache)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            raise ValueError(f"{loaded.name} cannot decode under {implementation}: {one_line(exc)}") from None
        points = measure_lengths(contexts, measure, need_bytes, device, budget_s, key="context",
                                 cancelled=cancelled, on_point=on_point)
    return {"model": loaded.name, "device": device, "implementation": implementation,
            "dtype": str(weight.dtype).replace("torch.", ""), "timer": "cuda_events" if clock.cuda else "perf_counter",
            "steps": steps, "repeats": repeats, "budget_s": budget_s, "seconds": time.perf_counter() - started,
            "note": note, "convention": SERVING_CONVENTION, "cache_convention": CACHE_CONVENTION,
            "kv_bytes_per_token": predicted(1), "points": points}


def cache_summary(result: dict) -> str:
    """One line: the measured cache against the prediction at the longest measured context."""
    points = measured_points(result)
    if not points:
        return "no context measured"
    p = points[-1]
    line = (f"at context {p['context']:,}: {nbytes(p['cache_bytes'])} in the cache's tensors "
            f"({p['cached_tokens']:,} tokens a layer)")
    if p["cache_bytes_predicted"] is not None:
        line += f", {nbytes(p['cache_bytes_predicted'])} predicted"
    if p["cache_held_bytes"] != p["cache_bytes"]:
        line += f", {nbytes(p['cache_held_bytes'])} of storage held"
    return line
