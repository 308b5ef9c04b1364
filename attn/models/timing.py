"""Measured time of a real model: per module, and per attention implementation.

Forward pre/post hooks on each layer's attention and MLP modules take a timestamp around the
module's work: perf counters on the CPU, CUDA events on a GPU (synchronised once at the end, so
the hooks do not stall the stream). Peak memory: on CUDA the allocator's own peak; on the CPU
the largest net sum of the allocations and frees that torch's profiler records during one pass
(tensors only: it misses workspace an operator frees before it returns).
"""
from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch
from torch import nn

from attn.memory import peak_bytes
from attn.models.capture import switched_implementation
from attn.models.sources import IMPLEMENTATIONS, LoadedModel, encode, load_model

# attribute names of a block's attention and MLP, across BERT, GPT-2 and Llama/Mistral;
# BERT's MLP is two modules (intermediate, output) run one after the other
ATTENTION_NAMES = ("attention", "attn", "self_attn")
MLP_NAMES = (("mlp",), ("intermediate", "output"))


def layer_blocks(model: nn.Module, n_layers: int) -> list[nn.Module]:
    """The list of transformer blocks: the first ModuleList with one entry per layer."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return list(module)
    raise ValueError(f"cannot find the {n_layers} transformer blocks of this model")


def block_parts(block: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """(attention module, MLP modules) of one block."""
    attention = next((getattr(block, n) for n in ATTENTION_NAMES if hasattr(block, n)), None)
    mlp = next(([getattr(block, n) for n in names] for names in MLP_NAMES
                if all(hasattr(block, n) for n in names)), None)
    if attention is None or mlp is None:
        raise ValueError(f"cannot find the attention and MLP modules of {type(block).__name__}")
    return attention, mlp


class Clock:
    """Start/stop marks on one device; elapsed milliseconds once all work is done."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start, stop) -> float:
        if self.cuda:
            return start.elapsed_time(stop)
        return (stop - start) * 1e3

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def _as_ids(loaded: LoadedModel, text_or_ids, max_tokens: int | None) -> torch.Tensor:
    if isinstance(text_or_ids, str):
        return encode(loaded, text_or_ids, max_tokens)[0]
    ids = torch.as_tensor(text_or_ids, dtype=torch.long)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.numel() == 0:
        raise ValueError("no token ids to run")
    return ids.to(loaded.device)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def time_modules(loaded: LoadedModel, text_or_ids, repeats: int = 5, warmup: int = 1,
                 max_tokens: int | None = 512, measure_memory: bool = True) -> dict:
    """Median time of each layer's attention and MLP modules and of the whole forward pass.

    Returns {device, timer, attn_implementation, seq_len, repeats, forward_ms (+ _p10, _p90),
    attention_ms, mlp_ms, other_ms (embeddings, norms, residuals, hook overhead), layers:
    [{layer, attention_ms, mlp_ms}], peak_bytes, peak_bytes_method}.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    ids = _as_ids(loaded, text_or_ids, max_tokens)
    n_layers = loaded.config.num_hidden_layers
    parts = [block_parts(b) for b in layer_blocks(loaded.model, n_layers)]
    clock = Clock(loaded.device)
    marks: dict[tuple[int, str, int], list] = {}
    handles = []

    def watch(module: nn.Module, key: tuple[int, str, int]) -> None:
        def pre(_m, _a):
            marks[key] = [clock.mark()]

        def post(_m, _a, _o):
            marks[key].append(clock.mark())
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    attention_ms = [[] for _ in range(n_layers)]
    mlp_ms = [[] for _ in range(n_layers)]
    forward_ms = []
    with loaded.lock, torch.no_grad():
        for _ in range(warmup):
            loaded.model(input_ids=ids)
        try:
            for i, (attention, mlp) in enumerate(parts):
                watch(attention, (i, "attention", 0))
                for j, module in enumerate(mlp):
                    watch(module, (i, "mlp", j))
            for _ in range(repeats):
                marks.clear()
                clock.sync()
                start = clock.mark()
                loaded.model(input_ids=ids)
                stop = clock.mark()
                clock.sync()
                forward_ms.append(clock.elapsed_ms(start, stop))
                for (i, what, _j), (a, b) in marks.items():
                    target = attention_ms if what == "attention" else mlp_ms
                    if len(target[i]) < len(forward_ms):
                        target[i].append(0.0)
                    target[i][-1] += clock.elapsed_ms(a, b)
        finally:
            for handle in handles:
                handle.remove()
        peak, method = _peak_bytes(loaded, ids) if measure_memory else (None, "not measured")
    layers = [{"layer": i, "attention_ms": statistics.median(attention_ms[i]),
               "mlp_ms": statistics.median(mlp_ms[i])} for i in range(n_layers)]
    total_attention = sum(x["attention_ms"] for x in layers)
    total_mlp = sum(x["mlp_ms"] for x in layers)
    forward = statistics.median(forward_ms)
    return {
        "device": loaded.device,
        "timer": "cuda_events" if clock.cuda else "perf_counter",
        "attn_implementation": loaded.attn_implementation,
        "seq_len": int(ids.shape[1]),
        "repeats": repeats,
        "forward_ms": forward,
        "forward_ms_p10": _percentile(forward_ms, 0.1),
        "forward_ms_p90": _percentile(forward_ms, 0.9),
        "attention_ms": total_attention,
        "mlp_ms": total_mlp,
        "other_ms": max(0.0, forward - total_attention - total_mlp),
        "layers": layers,
        "peak_bytes": peak,
        "peak_bytes_method": method,
    }


def _peak_bytes(loaded: LoadedModel, ids: torch.Tensor) -> tuple[int | None, str]:
    """Peak memory of one forward pass above what was allocated before it."""
    def forward():
        loaded.model(input_ids=ids)
    peak, _, method = peak_bytes(forward, loaded.device, "one forward")
    return peak, method


def compare_implementations(source: str, text: str, impls: Sequence[str] = IMPLEMENTATIONS,
                            repeats: int = 3, max_tokens: int | None = 128, device: str = "cpu"
                            ) -> list[dict]:
    """The same model, weights and text under each attention implementation, timed side by side.

    One cached model is switched from one implementation to the next (no second copy of the
    weights). One row per implementation: {impl, ok, reason, first_ms (includes any compilation),
    median_ms, p10_ms, p90_ms, seq_len, max_abs_diff (last hidden state against the first
    implementation that ran)}. An implementation that cannot run gets ok False and the reason in
    words instead of an exception; a model that cannot load raises ModelLoadError.
    """
    loaded = load_model(source, "eager", device)
    ids = encode(loaded, text, max_tokens)[0]
    clock = Clock(loaded.device)
    rows, reference = [], None
    for impl in impls:
        row = {"impl": impl, "ok": False, "reason": "", "first_ms": None, "median_ms": None,
               "p10_ms": None, "p90_ms": None, "seq_len": int(ids.shape[1]), "max_abs_diff": None}
        if impl not in IMPLEMENTATIONS:
            row["reason"] = f"unknown attention implementation {impl!r}: choose one of {', '.join(IMPLEMENTATIONS)}"
            rows.append(row)
            continue
        times = []
        try:
            # no_grad also matters for correctness: FlexAttention on the CPU has no backward
            with loaded.lock, torch.no_grad(), switched_implementation(loaded, impl):
                for _ in range(repeats + 1):
                    clock.sync()
                    start = clock.mark()
                    out = loaded.model(input_ids=ids).last_hidden_state
                    stop = clock.mark()
                    clock.sync()
                    times.append(clock.elapsed_ms(start, stop))
        except Exception as exc:  # the reason is the result: show it, run the next one
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            row["reason"] = f"{type(exc).__name__}: {first_line}"
            rows.append(row)
            continue
        out = out.float().cpu()
        if reference is None:
            reference = out
        runs = times[1:]
        row.update(ok=True, first_ms=times[0], median_ms=statistics.median(runs),
                   p10_ms=_percentile(runs, 0.1), p90_ms=_percentile(runs, 0.9),
                   max_abs_diff=float((out - reference).abs().max()))
        rows.append(row)
    return rows
