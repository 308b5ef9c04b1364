"""The train regime: forward and backward with respect to q, k and v for a seeded upstream
gradient, timed apart; what the forward keeps for the backward; the gradients against float64
autograd of the variant's own math.

Saved memory is counted with autograd's saved-tensor hooks during one forward: the bytes of every
tensor autograd keeps for the backward that is not one of the inputs (their memory is paid
anyway). The step's peak is the peak allocated during forward + backward above what was allocated
before it (the inputs and the upstream gradient).
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from attn import variants
from attn.accuracy import ERROR_ROWS, errors, relative_error, sample_rows
from attn.cost import attention_cost
from attn.device import device_name
from attn.environment import environment
from attn.inputs import random_qkv
from attn.memory import peak_bytes
from attn.nvml import gpu_energy_per_call
from attn.profiles import Profile, add_roofline
from attn.spec import AttentionSpec
from attn import timing
from attn.timing import Timing, settle_then_repeat
from attn.variants.gqa import repeat_kv

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def upstream_gradient(out: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded standard-normal dO the shape of the output (drawn on the CPU, as the inputs are)."""
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randn(out.shape, generator=gen).to(device=out.device, dtype=out.dtype)


def saved_bytes(forward: Callable[[], torch.Tensor], inputs: Tensors) -> tuple[torch.Tensor, int]:
    """(the output, bytes autograd keeps for the backward beyond the inputs) of one forward.
    Tensors that share a storage are counted once."""
    own = {t.untyped_storage().data_ptr() for t in inputs}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    return out, sum(kept.values())


def stopwatch(device: str) -> Callable[[Callable[[], object]], float]:
    """Milliseconds of one call: CUDA events on a GPU, the host clock on the CPU."""
    # looked up at each call: timing.cuda_ms is the seam the fake-CUDA tests replace
    return timing.cuda_ms if device.startswith("cuda") else timing.host_ms


def grad_error(forward: Callable[[], torch.Tensor], inputs: Tensors, g: torch.Tensor,
               spec: AttentionSpec, variant: str, max_rows: int = ERROR_ROWS) -> tuple[float, int]:
    """(the largest of ||g - g_ref|| / ||g_ref|| over dq, dk and dv, query rows checked) against
    float64 autograd of the variant's own weights. When every row's float64 weights would be too
    large, the upstream gradient is kept on a sample of rows only, for the kernel and the
    reference alike: dk and dv are then the sums over those rows, exactly comparable."""
    rows = sample_rows(spec, max_rows)
    if rows is not None:
        keep = torch.zeros(spec.seq, dtype=torch.bool, device=g.device)
        keep[rows.to(g.device)] = True
        g = g * keep[:, None]
    for t in inputs:
        t.grad = None
    forward().backward(g)
    got = [t.grad for t in inputs]
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in inputs)
    ref = variants.get(variant).weights(q64, k64, spec, rows) @ repeat_kv(v64, spec.groups)
    g64 = g.double() if rows is None else g.double().index_select(2, rows.to(g.device))
    ref.backward(g64)
    worst = max(relative_error(a, b.grad) for a, b in zip(got, (q64, k64, v64), strict=True))
    return worst, spec.seq if rows is None else rows.numel()


def profile_train(spec: AttentionSpec, variant: str, device: str, budget_s: float,
                  check_errors: bool = True, error_rows: int = ERROR_ROWS, temperature: float = 1.0,
                  inputs: Tensors | None = None, max_warmup_s: float = 2.0) -> Profile:
    """Profile one train step. The caller has checked the spec, the device and the fit."""
    started = time.perf_counter()
    var = variants.get(variant)
    on_cuda = device.startswith("cuda")
    drawn = inputs if inputs is not None else random_qkv(spec, temperature)
    q, k, v = (t.detach().requires_grad_() for t in drawn)
    del drawn

    def forward() -> torch.Tensor:
        return var.run(q, k, v, spec)

    def clear() -> None:
        q.grad = k.grad = v.grad = None

    t0 = time.perf_counter()
    out = forward()  # compiles, picks backends, warms caches
    g = upstream_gradient(out, spec.seed)
    out.backward(g)
    first_s = time.perf_counter() - t0
    backend, backend_reasons = var.kernel(q, k, v, spec), var.kernel_reasons(q, k, spec)
    clear()
    out, kept = saved_bytes(forward, (q, k, v))
    del out

    def step() -> None:
        forward().backward(g)
        clear()

    peak, reserved, memory_method = peak_bytes(step, device, "forward + backward")
    watch = stopwatch(device)
    method = ("cuda events" if on_cuda else "host clock") + ", forward and backward timed apart"
    fwd = settle_then_repeat(lambda: watch(forward), budget_s / 2, max_warmup_s, method)

    def backward_once() -> float:
        out = forward()
        ms = watch(lambda: out.backward(g))
        clear()
        return ms

    bwd = settle_then_repeat(backward_once, budget_s / 2, max_warmup_s, method)
    energy = gpu_energy_per_call(step, q.device)  # a whole step, forward + backward
    kernel_err = approx_err = grad_err = None
    rows = 0
    if check_errors:
        with torch.no_grad():
            out = forward()
        kernel_err, approx_err, rows = errors(out, q.detach(), k.detach(), v.detach(), spec, variant,
                                              error_rows)
        grad_err, _ = grad_error(forward, (q, k, v), g, spec, variant, error_rows)
    cost = attention_cost(var.resolved(spec, backend), variant, "train")
    median = fwd.median_ms + bwd.median_ms
    prof = Profile(
        variant=variant, spec=spec.to_dict(), device=device_name(device), backend=backend,
        latency_ms=median, p10_ms=fwd.p10_ms + bwd.p10_ms, p90_ms=fwd.p90_ms + bwd.p90_ms,
        repeats=min(fwd.repeats, bwd.repeats),
        timing_method=method + "; the step is the sum of the two medians (and of their p10, p90)",
        flops=cost.flops, flops_counted=None, flops_note=cost.flops_convention,
        achieved_tflops=cost.flops / (median * 1e-3) / 1e12, peak_bytes=int(peak),
        reserved_bytes=reserved, memory_method=memory_method, kernel_error=kernel_err,
        approx_error=approx_err, error_rows=rows, backend_reasons=backend_reasons,
        cost=cost.to_dict(), environment=environment(device),
        timing_s=first_s + fwd.elapsed_s + bwd.elapsed_s, mode="train",
        flops_convention=cost.flops_convention, flops_executed=cost.flops_executed,
        **_split(fwd, "forward"), **_split(bwd, "backward"), saved_bytes=kept, grad_error=grad_err,
        energy_j=energy, energy_per_token_j=None if energy is None else energy / (spec.batch * spec.seq))
    add_roofline(prof, spec, device)
    prof.wall_s = time.perf_counter() - started
    return prof


def _split(t: Timing, name: str) -> dict[str, float]:
    return {f"{name}_ms": t.median_ms, f"{name}_p10_ms": t.p10_ms, f"{name}_p90_ms": t.p90_ms}
