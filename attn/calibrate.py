"""Device calibration: measured matmul rates and memory bandwidth, and the roofline they give.

Figures are measured, never taken from a datasheet, and cached per device and torch version
under ATTN_HOME (default ~/.attn), so a profile can report its share of what this machine can do.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from attn.device import attn_home, device_name, resolve_device


@dataclass
class Calibration:
    device: str
    torch: str
    matmul_tflops: dict[str, float]  # dtype name -> measured dense matmul TFLOP/s
    bandwidth_gbps: float  # device memory copy, bytes read plus written, GB/s
    sizes: dict[str, int] = field(default_factory=dict)
    measured_at: str = ""

    def attainable_tflops(self, dtype: str, intensity: float) -> float | None:
        """The roofline: min(peak matmul rate, intensity * bandwidth), in TFLOP/s."""
        peak = self.matmul_tflops.get(dtype)
        if peak is None:
            return None
        return min(peak, intensity * self.bandwidth_gbps * 1e9 / 1e12)

    def ridge_intensity(self, dtype: str) -> float | None:
        """FLOPs per byte where the roof turns from memory-bound to compute-bound."""
        peak = self.matmul_tflops.get(dtype)
        return None if peak is None else peak * 1e12 / (self.bandwidth_gbps * 1e9)

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _best_seconds(fn, device: str, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_tflops(device: str, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / _best_seconds(lambda: a @ b, device, repeats) / 1e12


def copy_gbps(device: str, nbytes: int, repeats: int = 5) -> float:
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * nbytes / _best_seconds(lambda: dst.copy_(src), device, repeats) / 1e9


def device_key(device: str) -> str:
    return f"{device_name(device)} | torch {torch.__version__}"


def _cache_path() -> Path:
    return attn_home() / "calibration.json"


def _load_all() -> dict:
    """Every cached calibration; a missing, unreadable or foreign file reads as none."""
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached(device: str) -> Calibration | None:
    """This device's calibration from the cache, or None (never measured, or an entry this
    version cannot read: it is measured again)."""
    entry = _load_all().get(device_key(resolve_device(device)))
    if not isinstance(entry, dict):
        return None
    try:
        cal = Calibration(**entry)
    except TypeError:
        return None
    # a rate is divided by (a decode's floor_ms, the ridge): zero, NaN or a string from a
    # damaged or hand-edited file would give a division by zero or nonsense downstream
    usable = (isinstance(cal.matmul_tflops, dict) and _rate(cal.bandwidth_gbps)
              and all(isinstance(k, str) and _rate(r) for k, r in cal.matmul_tflops.items()))
    return cal if usable else None


def _rate(value: object) -> bool:
    """A measured rate: a number, finite and above zero."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def calibrate(device: str = "auto", force: bool = False) -> Calibration:
    """Measure (or load from the cache) this device's matmul rates and memory bandwidth."""
    device = resolve_device(device)
    if not force and (hit := cached(device)) is not None:
        return hit
    on_cuda = device.startswith("cuda")
    sizes = {"float32": 8192 if on_cuda else 1024, "bfloat16": 8192 if on_cuda else 512,
             "float16": 8192 if on_cuda else 512}
    rates = {name: matmul_tflops(device, getattr(torch, name), n) for name, n in sizes.items()}
    copy_bytes = 2**30 if on_cuda else 2**28
    cal = Calibration(device=device_key(device), torch=torch.__version__, matmul_tflops=rates,
                      bandwidth_gbps=copy_gbps(device, copy_bytes), sizes={**sizes, "copy_bytes": copy_bytes},
                      measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    everything = _load_all()
    everything[cal.device] = cal.to_dict()
    path = _cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(everything, indent=1))
    tmp.replace(path)  # atomic: a crash mid-write never leaves half a file
    return cal
