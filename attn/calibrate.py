"""Device calibration: measured matmul rates and memory bandwidth, and the roofline they give.

Figures are measured, never taken from a datasheet, and cached per device and torch version
under ATTN_HOME (default ~/.attn), so a profile can report its share of what this machine can do.
"""
from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from attn.device import attn_home, device_name, resolve_device, synchronize
from attn.home import AttnHomeError, explain_os_error, write_text_atomic


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


def _best_seconds(fn, device: str, repeats: int) -> float:
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
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


class CalibrationWarning(UserWarning):
    """The calibration cache held something unusable: it is ignored and measured again."""


def _load_all() -> tuple[dict, bool]:
    """Every cached calibration, and whether the file was readable. A missing file reads as
    none; one that is not a JSON object (truncated, foreign) too, with a warning, and it is
    kept aside when the next calibration is saved (see `_save`)."""
    path = _cache_path()
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        # never measured; or ATTN_HOME is a file, which saving a calibration reports in one line
        return {}, True
    except (OSError, UnicodeDecodeError) as error:
        warnings.warn(f"the calibration cache {path} cannot be read ({error}); the device will be "
                      "measured again", CalibrationWarning, stacklevel=3)
        return {}, False
    try:
        data = json.loads(text)
    except ValueError as error:
        data, why = None, f"it is not JSON ({error})"
    else:
        why = f"it holds a JSON {type(data).__name__}, not an object"
    if isinstance(data, dict):
        return data, True
    warnings.warn(f"the calibration cache {path} is ignored: {why}; the device will be measured "
                  "again", CalibrationWarning, stacklevel=3)
    return {}, False


def _positive(value: object) -> bool:
    # bool is an int to Python, but never a rate; NaN, infinities, zero and below are not measured
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _unusable(entry: object) -> str | None:
    """Why a cache entry cannot be used (None: it can)."""
    if not isinstance(entry, dict):
        return f"the entry is a JSON {type(entry).__name__}, not an object"
    try:
        cal = Calibration(**entry)
    except TypeError as error:
        return f"its fields do not match ({error})"
    if not isinstance(cal.matmul_tflops, dict) or not cal.matmul_tflops:
        return f"matmul_tflops is {cal.matmul_tflops!r}, not a table of rates"
    bad = {k: v for k, v in cal.matmul_tflops.items() if not _positive(v)}
    if bad:
        return f"matmul_tflops has rates that are not positive numbers: {bad}"
    if not _positive(cal.bandwidth_gbps):
        return f"bandwidth_gbps is {cal.bandwidth_gbps!r}, not a positive number"
    return None


def cached(device: str) -> Calibration | None:
    """This device's calibration from the cache, or None: never measured, or an entry that
    cannot be used (wrong types, NaN, a rate of zero or below), which is ignored with a
    CalibrationWarning so that no wrong number is used silently; it is measured again."""
    key = device_key(resolve_device(device))
    entry = _load_all()[0].get(key)
    if entry is None:
        return None
    why = _unusable(entry)
    if why is not None:
        warnings.warn(f"the calibration of {key} in {_cache_path()} is ignored: {why}; the device "
                      "will be measured again", CalibrationWarning, stacklevel=2)
        return None
    return Calibration(**entry)


def _save(cal: Calibration) -> None:
    """Add `cal` to the cache, whole or not at all (AttnHomeError when the disk is full or
    ATTN_HOME is not a folder). An unreadable cache is kept aside, never overwritten."""
    everything, readable = _load_all()
    path = _cache_path()
    if not readable and path.is_file():
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            path.replace(aside)
        except OSError as error:
            raise explain_os_error(error, path) from error
    everything[cal.device] = cal.to_dict()
    write_text_atomic(path, json.dumps(everything, indent=1))


def calibrate(device: str = "auto", force: bool = False, must_save: bool = True) -> Calibration:
    """Measure (or load from the cache) this device's matmul rates and memory bandwidth.

    A measurement that cannot be cached (a full disk, ATTN_HOME not a folder) raises
    AttnHomeError; with ``must_save=False`` (a profile that only needs the figures) it is
    returned all the same, with a CalibrationWarning that says why it was not kept."""
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
    try:
        _save(cal)
    except AttnHomeError as error:
        if must_save:
            raise
        warnings.warn(f"the calibration was measured but not cached: {error}", CalibrationWarning,
                      stacklevel=2)
    return cal
