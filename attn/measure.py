"""The profiler: time, memory, FLOPs (with a cross-check) and error of one attention call.

`profile` runs one variant on one spec and gathers what the modules below it measure: the time
(attn.timing), the peak memory above the baseline and the check that the call fits
(attn.memory), torch's FLOP count against the cost model's useful FLOPs (attn.flopcheck), the
errors against float64 references (attn.accuracy) and, on a GPU, the energy per call (attn.nvml).
"""
from __future__ import annotations

import time

import torch

from attn import variants
from attn.accuracy import ERROR_ROWS, errors
from attn.cost import USEFUL_FLOPS_NOTE, attention_cost
from attn.device import device_name, is_out_of_memory, resolve_device
from attn.environment import environment
from attn.flopcheck import flops_note
from attn.inputs import random_qkv
from attn.memory import DoesNotFit, check_fits, peak_bytes
from attn.nvml import gpu_energy_per_call
from attn.decoding import profile_decode
from attn.profiles import Profile, add_roofline
from attn.regimes import check_mode
from attn.spec import AttentionSpec
from attn.timing import check_budget, time_cpu, time_cuda
from attn.training import profile_train


# -- the profiler ----------------------------------------------------------------------------
def profile(spec: AttentionSpec, variant: str, device: str | None = None, budget_s: float = 1.0,
            check_errors: bool = True, error_rows: int = ERROR_ROWS, temperature: float = 1.0,
            inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
            mode: str = "forward") -> Profile:
    """Profile one variant on one spec in a regime (attn.regimes: forward, train, or decode with
    a spec from regimes.decode_spec). Raises ValueError for a spec it cannot run (with the
    reasons in words) and DoesNotFit when the call needs more memory than is free."""
    started = time.perf_counter()
    check_budget(budget_s)
    check_mode(mode)
    var = variants.get(variant)
    device = resolve_device(device or spec.device)
    spec = spec.with_(device=device)
    reasons = var.unsupported(spec, device)
    if mode in var.cannot:
        reasons.append(var.cannot[mode])
    if reasons:
        raise ValueError("; ".join(reasons))
    check_fits(spec, variant, device, mode)  # before allocating the inputs (the cost checks the mode)
    on_cuda = device.startswith("cuda")
    if mode != "forward":
        run = profile_train if mode == "train" else profile_decode
        try:
            return run(spec, variant, device, budget_s, check_errors, error_rows, temperature, inputs)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            raise DoesNotFit(f"does not fit: out of memory on {device} ({str(err).splitlines()[0]})") from None
        finally:
            if on_cuda:
                torch.cuda.empty_cache()
    q = k = v = None
    try:
        q, k, v = inputs if inputs is not None else random_qkv(spec, temperature)
        with torch.inference_mode():
            # fn is called only in this block; the `del q, k, v` below frees the inputs it refers to
            fn = lambda: var.run(q, k, v, spec)  # noqa: E731, F821
            t0 = time.perf_counter()
            out = fn()  # first call: compiles, picks backends, warms caches
            calls_s = [time.perf_counter() - t0]
            backend = var.kernel(q, k, v, spec)
            backend_reasons = var.kernel_reasons(q, k, spec)

            # The second call is the warm-up, and it also gives the peak memory and torch's FLOP
            # count, so neither costs a call of its own (a second or more at long sequences).
            # The counter is a dispatch mode that allocates nothing: the peak is the same with
            # it or without it.
            from torch.utils.flop_counter import FlopCounterMode  # lazy: ~25 ms to import

            counter = FlopCounterMode(display=False)

            def counted_call() -> None:
                t1 = time.perf_counter()
                with counter:
                    fn()
                calls_s.append(time.perf_counter() - t1)  # the call alone, not the profiler's set-up

            peak, reserved, memory_method = peak_bytes(counted_call, device)
            counted = int(counter.get_total_flops())
            timing = time_cuda(fn, budget_s) if on_cuda else time_cpu(fn, budget_s, warmup=0)
            energy = gpu_energy_per_call(fn, q.device)
            useful = var.flops(spec)
            kernel_err = approx_err = None
            rows = 0
            if check_errors:
                kernel_err, approx_err, rows = errors(out, q, k, v, spec, variant, error_rows)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise DoesNotFit(f"does not fit: out of memory on {device} ({str(err).splitlines()[0]})") from None
    finally:
        del q, k, v
        if on_cuda:
            torch.cuda.empty_cache()
    achieved = useful / (timing.median_ms * 1e-3) / 1e12
    prof = Profile(
        variant=variant, spec=spec.to_dict(), device=device_name(device), backend=backend,
        latency_ms=timing.median_ms, p10_ms=timing.p10_ms, p90_ms=timing.p90_ms,
        repeats=timing.repeats, timing_method=timing.method,
        flops=useful, flops_counted=counted,
        flops_note=flops_note(variant, spec, useful, counted, device),
        achieved_tflops=achieved, peak_bytes=int(peak), reserved_bytes=reserved,
        memory_method=memory_method, kernel_error=kernel_err, approx_error=approx_err,
        error_rows=rows, energy_j=energy,
        energy_per_token_j=None if energy is None else energy / (spec.batch * spec.seq),
        backend_reasons=backend_reasons,
        cost=attention_cost(var.resolved(spec, backend), variant).to_dict(), flops_convention=USEFUL_FLOPS_NOTE,
        environment=environment(device), timing_s=sum(calls_s) + timing.elapsed_s,
    )
    add_roofline(prof, spec, device)
    prof.wall_s = time.perf_counter() - started
    return prof
