"""The decode regime: one serving step, `new_tokens` queries against a KV cache of `context` keys.

The cache is laid out as a server keeps it (each variant's `decode_step` prepares it: the whole
cache, a rolling window, the blocks a layout lets the new tokens see, or a recurrent state), and
only the step is timed. The step is memory-bound: its floor is the bytes it reads over this
device's calibrated copy bandwidth (bytes read plus written per second, the rate a streaming
read can reach), and `achieved_gbps` says how near the step comes.
"""
from __future__ import annotations

import time

import torch

from attn import calibrate, variants
from attn.accuracy import ERROR_ROWS, errors
from attn.cost import attention_cost
from attn.device import device_name
from attn.environment import environment
from attn.inputs import random_qkv
from attn.memory import peak_bytes
from attn.nvml import gpu_energy_per_call
from attn.profiles import Profile, add_roofline
from attn.spec import AttentionSpec
from attn.timing import time_cpu, time_cuda


def floor_ms(bytes_read: int, device: str) -> float | None:
    """bytes_read over this device's calibrated bandwidth (calibrating once if it is not yet)."""
    cal = calibrate.calibrate(device, must_save=False)  # a full disk must not cost the profile
    return bytes_read / (cal.bandwidth_gbps * 1e9) * 1e3 if cal.bandwidth_gbps > 0 else None


def profile_decode(spec: AttentionSpec, variant: str, device: str, budget_s: float,
                   check_errors: bool = True, error_rows: int = ERROR_ROWS, temperature: float = 1.0,
                   inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> Profile:
    """Profile one decode step (spec from regimes.decode_spec). The caller has checked the spec,
    the device and the fit."""
    started = time.perf_counter()
    var = variants.get(variant)
    on_cuda = device.startswith("cuda")
    q, k, v = inputs if inputs is not None else random_qkv(spec, temperature)
    with torch.inference_mode():
        step = var.decode_step(q, k, v, spec)  # the cache as the server keeps it: not timed
        t0 = time.perf_counter()
        out = step()
        first_s = time.perf_counter() - t0
        backend, backend_reasons = var.kernel(q, k, v, spec), var.kernel_reasons(q, k, spec)
        cost = attention_cost(var.resolved(spec, backend), variant, "decode")
        peak, reserved, memory_method = peak_bytes(step, device, "one step")
        # on a GPU the L2 cache is flushed before each step: a server's cache does not stay in it
        timing = time_cuda(step, budget_s) if on_cuda else time_cpu(step, budget_s, warmup=0)
        energy = gpu_energy_per_call(step, q.device)
        kernel_err = approx_err = None
        rows = 0
        if check_errors:
            kernel_err, approx_err, rows = errors(out, q, k, v, spec, variant, error_rows)
    median_s = timing.median_ms * 1e-3
    prof = Profile(
        variant=variant, spec=spec.to_dict(), device=device_name(device), backend=backend,
        latency_ms=timing.median_ms, p10_ms=timing.p10_ms, p90_ms=timing.p90_ms,
        repeats=timing.repeats, timing_method=timing.method, flops=cost.flops, flops_counted=None,
        flops_note=cost.flops_convention, achieved_tflops=cost.flops / median_s / 1e12,
        peak_bytes=int(peak), reserved_bytes=reserved, memory_method=memory_method,
        kernel_error=kernel_err, approx_error=approx_err, error_rows=rows,
        backend_reasons=backend_reasons, cost=cost.to_dict(), environment=environment(device),
        timing_s=first_s + timing.elapsed_s, mode="decode", flops_convention=cost.flops_convention,
        context=spec.kv_seq, new_tokens=spec.seq, bytes_read=cost.bytes_read,
        achieved_gbps=cost.bytes_read / median_s / 1e9, floor_ms=floor_ms(cost.bytes_read, device),
        per_token_ms=timing.median_ms / spec.seq, energy_j=energy,
        energy_per_token_j=None if energy is None else energy / (spec.batch * spec.seq))
    add_roofline(prof, spec, device)
    prof.wall_s = time.perf_counter() - started
    return prof
