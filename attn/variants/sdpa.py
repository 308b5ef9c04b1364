"""sdpa: torch's scaled_dot_product_attention, on a chosen backend or the fastest that runs.

`backend=auto` times every backend that can run the shape once and keeps the fastest, so on
an H100 it can pick cuDNN (about 79% of the matmul rate there, against flash's 47%).
"""
from __future__ import annotations

import functools
import statistics
import threading
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from attn import timing
from attn.caches import LRU
from attn.masks import causal_pairs
from attn.params import Param
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.registry import Variant, register

BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
BACKEND_CHOICES = ("auto", *BACKENDS)
BACKEND = Param("backend", "auto", "SDPA backend; auto times each one that runs and keeps the fastest",
                choices=BACKEND_CHOICES)

_lock = threading.Lock()
# one entry a shape timed; a shape forgotten is timed again when it comes back
_auto_choice = LRU("sdpa auto choice", 512)
_auto_reasons = LRU("sdpa auto reasons", 512)


def _call(q, k, v, spec: AttentionSpec):
    gqa = spec.groups > 1
    if not spec.causal:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    if spec.causal_align == "top_left" or spec.seq == spec.kv_seq:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if spec.seq > spec.kv_seq:
        # bottom-right with more queries than keys: the first seq - kv_seq queries see no key
        # (output 0); the rest form a square causal problem
        dead = spec.seq - spec.kv_seq
        tail = F.scaled_dot_product_attention(q[:, :, dead:], k, v, is_causal=True, enable_gqa=gqa)
        return torch.cat([tail.new_zeros(*tail.shape[:2], dead, tail.shape[-1]), tail], dim=2)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=_lower_right_bias(spec.seq, spec.kv_seq, q.device), enable_gqa=gqa)


@functools.lru_cache(maxsize=64)
def _causal_bias(seq: int, kv_seq: int):
    # imported here: torch.nn.attention.bias pulls in torch._dynamo, seconds of start-up
    from torch.nn.attention.bias import causal_lower_right

    return causal_lower_right(seq, kv_seq)


def _lower_right_bias(seq: int, kv_seq: int, device: torch.device):
    """Bottom-right causal for more keys than queries. torch's CausalBias lets the fused kernels
    apply it without a mask in memory, but it is a tensor subclass that cannot be created while
    a dispatch mode is active (the profiler's FLOP counter, fake tensors). It holds no data, so
    one made earlier serves every call; failing that, the same mask as booleans."""
    try:
        return _causal_bias(seq, kv_seq)
    except RuntimeError:
        return torch.ones(seq, kv_seq, dtype=torch.bool, device=device).tril(kv_seq - seq)


def static_reasons(spec: AttentionSpec, device: str, backend: str) -> list[str]:
    """Why a backend cannot run this spec, from what is known without trying."""
    if backend not in BACKEND_CHOICES:
        return [f"unknown sdpa backend {backend!r}: choose one of {', '.join(BACKEND_CHOICES)}"]
    if not device.startswith("cuda") and backend in ("efficient", "cudnn"):
        return [f"{backend}: needs a CUDA GPU"]
    reasons = []
    if device.startswith("cuda"):
        if backend in ("flash", "cudnn") and spec.dtype not in ("float16", "bfloat16"):
            reasons.append(f"{backend}: needs float16 or bfloat16, not {spec.dtype}")
        if backend == "flash" and spec.head_dim > 256:
            reasons.append(f"flash: head_dim {spec.head_dim} > 256")
    return reasons


def _shape_key(q, k, spec: AttentionSpec) -> tuple:
    return (tuple(q.shape), tuple(k.shape), str(q.dtype), str(q.device), spec.causal,
            spec.causal_align)


def _median_ms(fn, device: str, repeats: int = 5) -> float:
    """Median of `repeats` calls after one warm-up call: CUDA events on a GPU (the host clock
    would count the launch, not the kernel), the host clock elsewhere."""
    times = []
    for _ in range(repeats + 1):
        if device.startswith("cuda"):
            times.append(timing.cuda_ms(fn))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[1:])


def _time_backend(name: str, q, k, v, spec: AttentionSpec) -> float:
    """Milliseconds of one call on this backend; RuntimeError when it cannot run the shape."""
    with sdpa_kernel(BACKENDS[name]):
        return _median_ms(lambda: _call(q, k, v, spec), str(q.device))


def choose_backend(q, k, v, spec: AttentionSpec) -> str:
    """The fastest backend that runs this shape here, timed once per shape and cached."""
    key = _shape_key(q, k, spec)
    with _lock:
        if key in _auto_choice:
            return _auto_choice[key]
        device = str(q.device)
        timings: dict[str, float] = {}
        reasons: dict[str, str] = {}
        for name in BACKENDS:
            static = static_reasons(spec, device, name)
            if static:
                reasons[name] = "; ".join(static)
                continue
            try:
                timings[name] = _time_backend(name, q, k, v, spec)
                reasons[name] = f"{name}: {timings[name]:.3g} ms"
            except RuntimeError as err:
                reasons[name] = f"{name}: {str(err).splitlines()[0]}"
        if not timings:
            raise RuntimeError("no sdpa backend can run this shape: " + "; ".join(reasons.values()))
        _auto_choice[key] = min(timings, key=timings.get)
        _auto_reasons[key] = reasons
        return _auto_choice[key]


def backend_used(q, k, v, spec: AttentionSpec) -> str:
    return choose_backend(q, k, v, spec) if spec.backend == "auto" else spec.backend


def auto_reasons(q, k, spec: AttentionSpec) -> dict[str, str]:
    """What auto found for each backend on this shape (after it ran once)."""
    return dict(_auto_reasons.get(_shape_key(q, k, spec), {}))


def kernel_reasons(q, k, spec: AttentionSpec) -> dict[str, str]:
    return auto_reasons(q, k, spec) if spec.backend == "auto" else {}


def run(q, k, v, spec: AttentionSpec):
    name = backend_used(q, k, v, spec)
    with sdpa_kernel(BACKENDS[name]):
        return _call(q, k, v, spec)


def decoder(q, k, v, spec: AttentionSpec):
    """A decode step. With GQA and one new token, a group's query heads are packed into the rows
    of their key/value head (FlashDecoding's trick): one call per KV head reads its cache once.
    Unpacked, torch's CPU kernel widens k and v to every query head, reading and writing the
    cache `groups` times (measured: 8 KV heads against 2 at context 32k was 2.0x, not 4x)."""
    if spec.groups == 1 or spec.seq != 1:
        return lambda: run(q, k, v, spec)
    b, h, _, d = q.shape
    packed = q.reshape(b, spec.kv_heads, spec.groups, d)  # query head kvh*groups + j -> row j
    # one new token sees every cached key: no mask among the packed rows
    as_mqa = spec.with_(heads=spec.kv_heads, seq=spec.groups, causal=False, d_model=spec.d_model)
    return lambda: run(packed, k, v, as_mqa).reshape(b, h, 1, d)


def unsupported(spec: AttentionSpec, device: str) -> list[str]:
    return [] if spec.backend == "auto" else static_reasons(spec, device, spec.backend)


def extra_bytes(spec: AttentionSpec) -> int:
    # the fused kernels keep scores in on-chip tiles; math materialises them like dense does
    if spec.backend == "math":
        return dense.extra_bytes(spec)
    # half-precision inputs accumulate the output in float32 before the cast
    if spec.dtype_bytes < 4:
        return spec.batch * spec.heads * spec.seq * spec.head_dim * 4
    return 0


def saved_bytes(spec: AttentionSpec) -> int:
    # a fused kernel keeps its output and one log-sum-exp (float32) per query row, and
    # recomputes the weights in the backward; math keeps what eager attention keeps
    if spec.backend == "math":
        # the weights, q and k each scaled by sqrt(scale) (k widened to every head) and, under
        # GQA, the widened v (measured on the CPU)
        b, h, d, item = spec.batch, spec.heads, spec.head_dim, spec.dtype_bytes
        widened_v = 0 if spec.groups == 1 else b * h * spec.kv_seq * d * item
        return dense.weights_bytes(spec) + (b * h * (spec.seq + spec.kv_seq) * d) * item + widened_v
    rows = spec.batch * spec.heads * spec.seq
    return rows * spec.head_dim * spec.dtype_bytes + rows * 4


def backward_bytes(spec: AttentionSpec) -> int:
    if spec.backend == "math":
        return dense.backward_bytes(spec)
    # the fused backward's own buffers: about two outputs' worth (measured on the CPU's flash
    # kernel: a float32 copy of dO*O per row and the accumulators)
    return 2 * spec.batch * spec.heads * spec.seq * spec.head_dim * max(4, spec.dtype_bytes)


VARIANT = register(Variant(
    name="sdpa",
    title="SDPA (fused)",
    summary="torch.nn.functional.scaled_dot_product_attention on the flash, efficient, cuDNN or "
            "math backend; auto picks the fastest that runs.",
    exact=True,
    params=(BACKEND,),
    run=run,
    weights=dense.weights,  # same math as dense; the fused kernels do not return weights
    pairs=causal_pairs,
    flops=lambda spec: dense.useful_flops(spec, causal_pairs(spec)),
    extra_bytes=extra_bytes,
    color="#f59e0b",
    kernel=backend_used,
    saved_bytes=saved_bytes,
    backward_bytes=backward_bytes,
    recomputes=lambda spec: spec.backend != "math",
    saves_output=lambda spec: spec.backend != "math",
    kernel_reasons=kernel_reasons,
    resolved=lambda spec, kernel: spec.with_(backend=kernel) if kernel in BACKENDS else spec,
    decoder=decoder,
    fused_on_cpu=True,
    unsupported=unsupported,
    mask=dense.causal_mask,
))
