"""Fake CUDA on a CPU-only torch build: `device="cuda"` tensors that carry a device and a dtype
but no data (torch's FakeTensorMode), so the CUDA paths run in `make test` and a CPU tensor left
in them fails (FakeTensorDeviceMismatchError) as it would on a GPU.

Two things a CPU-only build lacks are supplied here, for the tests only:
- CUDA's device guard. Python indexing (`x[:, None]`, `out[:, lo:hi] = ...`), `.to("cuda")` and
  autograd's graph ask the guard for the current device; torch's FakeTensorMode installs a no-op
  guard only on a CUDA build without a GPU. A ten-line C++ library registers torch's own
  FakeGuardImpl for CUDA when none is registered (built with the system's C++ compiler, about
  2 s, once per torch version; without a compiler these tests skip and say why).
- attn's seams: the places that need a real device (CUDA events, the allocator's statistics,
  free memory, NVML, synchronize, `torch.cuda.is_available`) are module-level functions, which
  `fake_cuda` replaces with monkeypatch.

What fake CUDA cannot run here, each said again in the test that reaches it:
- the autograd engine's backward (it asks torch for a CUDA accelerator): `_placing_backward`
  stands in, checking the upstream gradient and giving each leaf a gradient on its device;
- FlexAttention's `create_block_mask` and its compiled kernel (Triton on a real device);
- anything that reads a value (`.item()`, `nonzero`): the errors against float64 references.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from attn import calibrate, device, memory, nvml, timing
from attn import variants
from attn.variants import block_sparse, linformer, masked, performer, registry, sdpa, softmax

__all__ = ["FakeTensorDeviceMismatchError", "fake_cuda", "FAKE_MS", "FakeReader"]

_GUARD_SOURCE = r"""
#include <c10/core/impl/FakeGuardImpl.h>
namespace {
c10::impl::FakeGuardImpl<c10::DeviceType::CUDA> fake_cuda_guard;
struct Register {
  Register() {
    auto& slot = c10::impl::device_guard_impl_registry[static_cast<size_t>(c10::DeviceType::CUDA)];
    if (slot.load() == nullptr) slot.store(&fake_cuda_guard);  // never over a real CUDA build's
  }
} registered;
}
"""

FAKE_MS = 1.0  # what the fake CUDA events say every call took


@functools.lru_cache(maxsize=1)
def _guard_loaded() -> str | None:
    """Load the fake CUDA device guard; None when done, else why it cannot be."""
    if torch.cuda.is_available():
        return None  # a real CUDA build with a GPU has its own guard
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        return "no C++ compiler to build the fake CUDA device guard"
    root = Path(torch.__file__).parent
    key = hashlib.sha1((_GUARD_SOURCE + torch.__version__).encode()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"attn-fake-cuda-guard-{key}.so"
    if not lib.exists():
        src = lib.with_suffix(".cpp")
        src.write_text(_GUARD_SOURCE)
        tmp = lib.with_suffix(".tmp.so")
        done = subprocess.run([compiler, "-std=c++17", "-shared", "-fPIC", f"-I{root / 'include'}",
                               str(src), f"-L{root / 'lib'}", "-lc10", f"-Wl,-rpath,{root / 'lib'}",
                               "-o", str(tmp)], capture_output=True, text=True)
        if done.returncode != 0:
            return f"building the fake CUDA device guard failed: {done.stderr.strip()[:300]}"
        tmp.replace(lib)  # atomic: two test processes never load half a file
    ctypes.CDLL(str(lib))
    return None


class FakeReader:
    """An NVML reader whose energy counter goes up 5 J (5000 mJ) a read."""

    name = "fake GPU"

    def __init__(self) -> None:
        self.energy_mj = 0

    def read(self) -> nvml.GpuReading:
        self.energy_mj += 5000
        return nvml.GpuReading(energy_mj=self.energy_mj)


def _clear_tensor_caches() -> None:
    """Caches that hold tensors: one made under a fake mode must not outlive it (a later CPU
    run would get a fake tensor), and one made outside must not be used inside."""
    block_sparse._layout.cache_clear()
    performer.random_features.cache_clear()
    linformer._pooling.cache_clear()
    softmax._plans.clear()
    masked._block_masks.clear()
    sdpa._auto_choice.clear()
    sdpa._auto_reasons.clear()


def _placing_backward(self: torch.Tensor, gradient: torch.Tensor | None = None, *args, **kwargs) -> None:
    """Stands in for autograd's backward, which a CPU-only build cannot run on CUDA tensors: the
    upstream gradient must match the output (device, dtype, shape), and every leaf that needs a
    gradient gets one of its own device and dtype, found by walking the graph."""
    gradient = torch.ones_like(self) if gradient is None else gradient
    for what in ("device", "dtype", "shape"):
        if getattr(gradient, what) != getattr(self, what):
            raise RuntimeError(f"upstream gradient's {what} {getattr(gradient, what)} is not the "
                               f"output's {getattr(self, what)}")
    seen, todo = set(), [self.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        leaf = getattr(node, "variable", None)
        if leaf is not None:
            leaf.grad = torch.zeros_like(leaf) if leaf.grad is None else leaf.grad
        todo.extend(fn for fn, _ in node.next_functions)


def _on_real_tensors(fn):
    """fn run outside the fake mode: the cost model's CPU arithmetic on tensors (block_sparse
    counts its layout's pairs with nonzero), which reads values fake tensors do not have. The
    layout it draws is forgotten after, so the CUDA path draws its own, fake, as it would."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    def real(*args, **kwargs):
        with unset_fake_temporarily():
            block_sparse._layout.cache_clear()
            try:
                return fn(*args, **kwargs)
            finally:
                block_sparse._layout.cache_clear()
    return real


def _checked_flex(q, k, v, block_mask=None, enable_gqa=False, **kwargs) -> torch.Tensor:
    """What the compiled FlexAttention kernel would be given, checked: q, k, v and the block
    mask on one device, q, k, v of one dtype. The output has q's shape, device and dtype."""
    devices = {str(t.device) for t in (q, k, v, block_mask.kv_num_blocks)}
    if len(devices) != 1:
        raise RuntimeError(f"flex_attention given tensors on {sorted(devices)}")
    if len({q.dtype, k.dtype, v.dtype}) != 1:
        raise RuntimeError(f"flex_attention given dtypes {q.dtype}, {k.dtype}, {v.dtype}")
    return torch.empty_like(q)


@contextlib.contextmanager
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Inside: `torch.empty(..., device="cuda")` is a fake CUDA tensor and attn believes a GPU is
    here. Yields a record of the seams' calls (synchronize, cuda_ms, peak)."""
    why = _guard_loaded()
    if why:
        pytest.skip(why)
    calls: dict = {"synchronize": 0, "cuda_ms": 0, "peak": 0}

    def fake_cuda_ms(fn) -> float:
        calls["cuda_ms"] += 1
        fn()
        return FAKE_MS

    def fake_peak(fn, dev="cuda") -> tuple[int, int]:
        calls["peak"] += 1
        fn()
        return 0, 0

    def fake_sync(dev: str) -> None:
        calls["synchronize"] += 1

    monkeypatch.setattr(device, "cuda_available", lambda: True)
    monkeypatch.setattr(device, "synchronize", fake_sync)
    monkeypatch.setattr(nvml, "synchronize", fake_sync)
    monkeypatch.setattr(memory, "synchronize", fake_sync)
    monkeypatch.setattr(calibrate, "synchronize", fake_sync)
    monkeypatch.setattr(timing, "cuda_ms", fake_cuda_ms)
    monkeypatch.setattr(memory, "cuda_peak_bytes", fake_peak)
    monkeypatch.setattr(memory, "free_bytes", lambda dev: 80 * 2**30)
    monkeypatch.setattr(nvml, "open_nvml", lambda index=0: (FakeReader(), "fake GPU (NVML)"))
    # the energy loop runs at least one call, not half a second of them
    monkeypatch.setattr(nvml, "energy_per_call", functools.partial(nvml.energy_per_call, min_s=1e-3))
    fake_cal = calibrate.Calibration(device="fake GPU", torch=torch.__version__,
                                     matmul_tflops={"float32": 50.0, "bfloat16": 500.0, "float16": 500.0},
                                     bandwidth_gbps=3000.0)
    monkeypatch.setattr(calibrate, "calibrate", lambda dev="auto", force=False, must_save=True: fake_cal)
    monkeypatch.setattr(calibrate, "cached", lambda dev: fake_cal)
    monkeypatch.setattr(torch.Tensor, "backward", _placing_backward)
    # FlexAttention: create_block_mask runs for real on fake CUDA indices (the mask function,
    # the layout's device). The kernel does not: flex_attention compiles itself even when
    # called eagerly, and Inductor needs a GPU. `_checked_flex` stands in for
    # masked.flex_attention's `_compiled_flex = torch.compile(flex, dynamic=False)` and its
    # call: the two lines only a GPU checks.
    monkeypatch.setattr(masked, "_compiled_flex", _checked_flex)
    sparse = variants.get("block_sparse")
    monkeypatch.setitem(registry._REGISTRY, "block_sparse", dataclasses.replace(
        sparse, pairs=_on_real_tensors(sparse.pairs), flops=_on_real_tensors(sparse.flops),
        extra_bytes=_on_real_tensors(sparse.extra_bytes), decode_keys=_on_real_tensors(sparse.decode_keys)))
    _clear_tensor_caches()
    try:
        with FakeTensorMode():
            yield calls
    finally:
        _clear_tensor_caches()
