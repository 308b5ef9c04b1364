"""The GPU's counters through NVML: utilisation, memory, power, temperature, SM clock and the
energy counter, read once (`NvmlReader.read`), and joules per call from the energy counter.

Without an NVIDIA driver (laptops, CI) `open_nvml` says so in one sentence instead of a reader;
the telemetry sampler then samples the CPU side only. A reader is anything with `name` and
`read()`, so the GPU paths are tested on the CPU with a fake one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable, Protocol

from attn.device import synchronize

NO_DRIVER_STATUS = "no NVIDIA driver: GPU metrics are off, CPU and memory are sampled"


@dataclass(frozen=True)
class GpuReading:
    """One read of the GPU counters; a field is None where the device does not report it."""
    gpu_util_pct: float | None = None
    gpu_mem_used_bytes: int | None = None
    gpu_mem_total_bytes: int | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    energy_mj: int | None = None  # NVML total energy since the driver loaded, millijoules


GPU_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GpuReading))


class GpuReader(Protocol):
    """Anything that reads the GPU counters; `name` is the device's name."""
    name: str

    def read(self) -> GpuReading: ...


class NvmlReader:
    """GPU counters through NVML. Raises on construction when there is no driver or no such GPU."""

    def __init__(self, gpu_index: int = 0) -> None:
        import pynvml  # imported here so that a machine without the package still samples the CPU

        self._nvml = pynvml
        pynvml.nvmlInit()
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
            name = pynvml.nvmlDeviceGetName(self._handle)
        except Exception:
            pynvml.nvmlShutdown()
            raise
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.gpu_index = gpu_index
        # A counter the device does not support fails the same way every tick; asking again
        # would only cost time, so it is dropped after the first NotSupported.
        self._unsupported: set[str] = set()

    def _get(self, key: str, call, *args):
        if key in self._unsupported:
            return None
        try:
            return call(self._handle, *args)
        except self._nvml.NVMLError_NotSupported:
            self._unsupported.add(key)
        except self._nvml.NVMLError:
            pass  # transient (GPU busy resetting, lost); try again next tick
        return None

    def read(self) -> GpuReading:
        nv = self._nvml
        util = self._get("util", nv.nvmlDeviceGetUtilizationRates)
        mem = self._get("mem", nv.nvmlDeviceGetMemoryInfo)
        power_mw = self._get("power", nv.nvmlDeviceGetPowerUsage)
        temp = self._get("temp", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
        clock = self._get("clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM)
        energy = self._get("energy", nv.nvmlDeviceGetTotalEnergyConsumption)
        return GpuReading(
            gpu_util_pct=None if util is None else float(util.gpu),
            gpu_mem_used_bytes=None if mem is None else int(mem.used),
            gpu_mem_total_bytes=None if mem is None else int(mem.total),
            power_w=None if power_mw is None else power_mw / 1000.0,
            temperature_c=None if temp is None else float(temp),
            sm_clock_mhz=None if clock is None else float(clock),
            energy_mj=None if energy is None else int(energy),
        )

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


def open_nvml(gpu_index: int = 0) -> tuple[NvmlReader | None, str]:
    """(a reader, a status line) or (None, why GPU metrics are off), in words a user can act on."""
    try:
        import pynvml
    except ImportError:
        return None, ("pynvml is not installed (pip install nvidia-ml-py): GPU metrics are off, "
                      "CPU and memory are sampled")
    try:
        reader = NvmlReader(gpu_index)
    except pynvml.NVMLError as e:
        no_driver = (getattr(pynvml, "NVMLError_LibraryNotFound", ()),
                     getattr(pynvml, "NVMLError_DriverNotLoaded", ()))
        if isinstance(e, no_driver):
            return None, NO_DRIVER_STATUS
        if isinstance(e, getattr(pynvml, "NVMLError_InvalidArgument", ())):
            return None, f"no GPU {gpu_index} on this machine: GPU metrics are off, CPU and memory are sampled"
        return None, f"NVML failed ({e}): GPU metrics are off, CPU and memory are sampled"
    except Exception as e:  # a broken install should cost the GPU curves, not the app
        return None, f"NVML failed ({e}): GPU metrics are off, CPU and memory are sampled"
    return reader, f"GPU {gpu_index}: {reader.name} (NVML)"


def energy_per_call(fn: Callable[[], object], reader: GpuReader, sync: Callable[[], None], min_s: float = 0.5,
                    max_calls: int = 100_000) -> float | None:
    """Joules per call from the GPU's total-energy counter across a loop of calls lasting at
    least `min_s` (the counter is device-wide and updates every few milliseconds)."""
    before = reader.read().energy_mj
    if before is None:
        return None
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s and calls < max_calls:
        fn()
        calls += 1
        if calls % 8 == 0:
            sync()
    sync()
    after = reader.read().energy_mj
    if after is None or after < before:
        return None
    return (after - before) / 1e3 / calls


def gpu_energy_per_call(fn: Callable[[], object], device) -> float | None:
    """Joules per call of `fn` on a CUDA device from its energy counter; None where there is no
    counter (the CPU, no driver, a GPU without one)."""
    import torch  # the sampler imports this module without torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    reader, _ = open_nvml(device.index or 0)
    return None if reader is None else energy_per_call(fn, reader, lambda: synchronize(str(device)))
