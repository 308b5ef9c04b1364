"""The training step of a model's attention layers: forward and backward through every layer's
attention module alone, time and peak memory, at several sequence lengths.

How: one forward of the whole model (no gradients) over seeded random token ids records the
arguments each layer's attention module is called with (its hidden states, the mask, the rotary
position embeddings: whatever this family passes). Then each module is called again with those
arguments, its hidden states a leaf that needs a gradient, and the outputs of all layers are
back-propagated together against a seeded random upstream gradient. So the step is exactly the
model's attention work at that length (the Q, K, V and O projections and the attention core;
BERT's module also holds its output LayerNorm and residual) with every layer's saved tensors alive
at once, as in a real step, and nothing else: the MLPs, the norms outside the modules and the
embeddings do not run. Gradients: the modules' weights and their inputs. Modules stay in eval mode
(no dropout), and there is no optimizer step.

Peak memory comes from a separate, untimed step (the profiler slows what it watches): on the CPU
torch's profiler memory events (attn.memory.cpu_peak_bytes), on CUDA the allocator's peak. Before
a length runs, an estimate of the step's memory (every layer keeping its S x S scores, as eager
attention does) is checked against the free memory, so a length that cannot fit says so in words.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from attn.cost import attention_cost
from attn.memory import peak_bytes
from attn.models.capture import switched_implementation
from attn.models.costs import model_shape
from attn.models.lengths import measure_lengths, one_line
from attn.models.sources import LoadedModel
from attn.models.timing import Clock, block_parts, layer_blocks
from attn.spec import AttentionSpec
from attn.timing import summarize

DEFAULT_SEQ_LENS = (128, 256, 512, 1024)
TRAIN_STEP_CONVENTION = (
    "batch 1, seeded random token ids; forward + backward through every layer's attention module "
    "(Q, K, V, O projections and the attention core), called with the arguments the model passes it, "
    "all layers' saved tensors alive together; gradients of the modules' weights and inputs for a "
    "random upstream gradient; MLPs, outer norms and embeddings not run; eval mode (no dropout), no "
    "optimizer step; median of the repeats")


def train_seq_lens(loaded: LoadedModel, seq_lens: Sequence[int]) -> tuple[list[int], str]:
    """The lengths within the model's positions, and a note when some were left out."""
    if not seq_lens or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in seq_lens):
        raise ValueError(f"sequence lengths must be whole numbers >= 1, got {list(seq_lens)}")
    limit = loaded.max_positions
    kept = sorted({min(n, limit) if limit else n for n in seq_lens})
    dropped = sorted(n for n in set(seq_lens) if limit and n > limit)
    note = "" if not dropped else (f"{', '.join(map(str, dropped))} left out: {loaded.name} has {limit} "
                                   f"positions, the longest sequence it takes")
    return kept, note


def attention_calls(loaded: LoadedModel, ids: torch.Tensor) -> list[tuple[torch.nn.Module, tuple, dict]]:
    """(attention module, args, kwargs) of every layer, as the model calls them for `ids`."""
    modules = [block_parts(b)[0] for b in layer_blocks(loaded.model, loaded.config.num_hidden_layers)]
    calls: list = []
    handles = [m.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((module, args, kwargs)), with_kwargs=True) for m in modules]
    try:
        with torch.no_grad():
            loaded.model(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    if len(calls) != len(modules):
        raise ValueError(f"expected one call of each of the {len(modules)} attention modules, saw {len(calls)}")
    return calls


def _with_leaf(args: tuple, kwargs: dict) -> tuple[torch.Tensor, tuple, dict]:
    """The call's hidden states as a fresh leaf that needs a gradient, and the call using it."""
    if args:
        leaf = args[0].detach().clone().requires_grad_(True)
        return leaf, (leaf, *args[1:]), kwargs
    leaf = kwargs["hidden_states"].detach().clone().requires_grad_(True)
    return leaf, args, {**kwargs, "hidden_states": leaf}


def _first_tensor(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def train_step_bytes_estimate(config, seq: int, dtype_bytes: int = 4) -> int:
    """An upper estimate of the step's peak: per layer, the dense attention core's train step with
    its S x S scores kept (attn.cost), the projections' inputs and outputs saved and their
    gradients (generously: four copies of x, q, k, v and the attention output, rotary copies
    included), and the weights' gradients."""
    s = model_shape(config)
    dtype = {2: "float16", 4: "float32", 8: "float64"}.get(dtype_bytes, "float32")
    spec = AttentionSpec(seq=seq, heads=s.heads, kv_heads=s.kv_heads, head_dim=s.head_dim, d_model=s.d_model,
                         dtype=dtype, causal=s.kind == "decoder")
    core = attention_cost(spec, "dense", "train").peak_bytes
    width = 2 * s.d_model + 2 * s.heads * s.head_dim + 2 * s.kv_heads * s.head_dim
    activations = 4 * seq * width * dtype_bytes
    weights = s.d_model * s.head_dim * (2 * s.heads + 2 * s.kv_heads) * dtype_bytes
    return s.layers * (core + activations + weights)


def attention_train_step(loaded: LoadedModel, seq_lens: Sequence[int] = DEFAULT_SEQ_LENS, repeats: int = 3,
                         budget_s: float = 60.0, seed: int = 0, implementation: str = "sdpa",
                         measure_memory: bool = True, on_point: Callable[[dict, float], None] | None = None,
                         cancelled: Callable[[], bool] | None = None) -> dict:
    """Time and peak memory of the attention layers' training step at each length.

    Returns {model, kind, device, implementation, dtype, timer, layers, repeats, budget_s, note,
    convention, points: [{seq, status, seconds, forward_ms, backward_ms, step_ms (each median,
    + _p10, _p90 for step_ms), peak_bytes, peak_bytes_method, estimate_bytes}]}; a length that was
    not measured has its reason as `status`. Raises ValueError (one line) for bad sizes or a model
    whose attention modules attn cannot find.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    seq_lens, note = train_seq_lens(loaded, seq_lens)
    model, config, device = loaded.model, loaded.config, loaded.device
    dtype_bytes = next(model.parameters()).element_size()
    clock = Clock(device)
    generator = torch.Generator().manual_seed(seed)
    cuda = device.startswith("cuda")

    def step(calls) -> tuple[float, float]:
        """One training step of every attention module: (forward ms, backward ms)."""
        _drop_grads(calls)
        ready = [(module, *_with_leaf(args, kwargs)[1:]) for module, args, kwargs in calls]
        clock.sync()
        start = clock.mark()
        outs = [_first_tensor(module(*args, **kwargs)) for module, args, kwargs in ready]
        middle = clock.mark()
        grads = [torch.randn(o.shape, generator=generator, dtype=o.dtype).to(o.device) for o in outs]
        turn = clock.mark()
        torch.autograd.backward(outs, grads)
        stop = clock.mark()
        clock.sync()
        return clock.elapsed_ms(start, middle), clock.elapsed_ms(turn, stop)

    def measure(seq: int) -> dict:
        ids = torch.randint(config.vocab_size, (1, seq), generator=generator).to(device)
        calls = attention_calls(loaded, ids)
        times = [step(calls) for _ in range(repeats)]
        forward = summarize([f for f, _ in times], 0, "perf")
        backward = summarize([b for _, b in times], 0, "perf")
        whole = summarize([f + b for f, b in times], 0, "perf")
        peak, method = None, "not measured"
        if measure_memory:
            peak, _, method = peak_bytes(lambda: step(calls), "cuda" if cuda else "cpu", "forward + backward")
        _drop_grads(calls)
        return {"forward_ms": forward.median_ms, "backward_ms": backward.median_ms, "step_ms": whole.median_ms,
                "step_ms_p10": whole.p10_ms, "step_ms_p90": whole.p90_ms, "peak_bytes": peak,
                "peak_bytes_method": method, "estimate_bytes": need_bytes(seq)}

    def need_bytes(seq: int) -> int:
        try:
            return train_step_bytes_estimate(config, seq, dtype_bytes)
        except ValueError:  # a family attn has no cost model for: no check before it runs
            return 0

    started = time.perf_counter()
    with loaded.lock, torch.enable_grad(), switched_implementation(loaded, implementation):
        try:  # the first steps pay for lazy set-up: not any length's time
            warm = torch.randint(config.vocab_size, (1, min(seq_lens[0], 64)), generator=generator).to(device)
            calls = attention_calls(loaded, warm)
            step(calls)
            _drop_grads(calls)
            del calls
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"{loaded.name}: its attention modules cannot be trained under "
                             f"{implementation}: {one_line(exc)}") from None
        try:
            points = measure_lengths(seq_lens, measure, need_bytes, device, budget_s, key="seq",
                                     cancelled=cancelled, on_point=on_point)
        finally:
            for p in model.parameters():  # the model is shared with inference: free what the steps kept
                p.grad = None
    return {"model": loaded.name, "kind": loaded.kind, "device": device, "implementation": implementation,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "timer": "cuda_events" if clock.cuda else "perf_counter", "layers": config.num_hidden_layers,
            "repeats": repeats, "budget_s": budget_s, "seconds": time.perf_counter() - started,
            "note": note, "convention": TRAIN_STEP_CONVENTION, "points": points}


def _drop_grads(calls) -> None:
    for module, _, _ in calls:
        for p in module.parameters():
            p.grad = None
