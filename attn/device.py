"""This machine: the device that runs work, its name and free memory, the CPU's name, where attn
keeps its files (ATTN_HOME), and which errors mean "out of memory".

Nothing outside the standard library is imported here at module level: the job runner imports
this module and must not load torch (seconds) in a process that never touches a tensor. torch
and psutil are imported inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import sys
from pathlib import Path


# -- where attn keeps its files ---------------------------------------------------------------

def attn_home() -> Path:
    """`$ATTN_HOME`, or `~/.attn` without it: the run store and the calibration cache live here."""
    home = os.environ.get("ATTN_HOME")
    return Path(home).expanduser() if home else Path.home() / ".attn"


# -- which device, and what it is called ------------------------------------------------------

def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU; False (never an error) without torch or a driver."""
    try:
        import torch  # lazy: see the module's docstring

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def resolve_device(device: str) -> str:
    """'auto' is CUDA when torch sees a GPU, else the CPU."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise ValueError("device cuda was asked for, but torch sees no CUDA GPU here: use cpu or auto")
    return device


def synchronize(device: str) -> None:
    """Wait for the work queued on a CUDA device (a no-op on the CPU). The one place attn waits
    for a GPU, so the tests can run the CUDA paths on fake CUDA tensors without one."""
    if str(device).startswith("cuda"):
        import torch  # lazy: see the module's docstring

        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13"), or the best the platform offers."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            # x86 says "model name"; some ARM kernels only say "Hardware" or "Model"
            if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=8)
def gpu_name(device: str = "cuda") -> str:
    """The name of a CUDA device ("NVIDIA H100 80GB HBM3"), or a placeholder when it cannot be
    read."""
    try:
        import torch  # lazy: see the module's docstring

        return str(torch.cuda.get_device_name(torch.device(device)))
    except Exception:
        return "CUDA device (name unavailable)"


def device_name(device: str) -> str:
    """The name a profile and the calibration cache give a device: the GPU's name, or the CPU's
    architecture and torch's thread count (the threads change the CPU's rates)."""
    if device.startswith("cuda"):
        return gpu_name(device)
    import torch  # lazy: see the module's docstring

    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


# -- memory -----------------------------------------------------------------------------------

def free_bytes(device: str) -> int:
    """Memory a call may use: free device memory on CUDA; half the available RAM on the CPU."""
    if device.startswith("cuda"):
        import torch  # lazy: see the module's docstring

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available // 2)


def device_summary(device: str = "auto") -> dict:
    """What the sidebar shows: the device that runs work, and its free and total memory."""
    device = resolve_device(device)
    if device.startswith("cuda"):
        import torch  # lazy: see the module's docstring

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return {"device": device, "name": gpu_name(device), "label": gpu_name(device), "free_bytes": int(free),
                "total_bytes": int(total), "gpu": True}
    import psutil

    vm = psutil.virtual_memory()
    # "name" is the calibration's and the profiles' key ("CPU (x86_64, 2 threads)"); "label" puts
    # the CPU's model in place of "CPU", as a run's environment names it ("AMD EPYC (2 cores)"), so
    # that the sidebar and the runs do not call one device by two unrelated names
    name = device_name(device)
    return {"device": device, "name": name, "label": name.replace("CPU", cpu_name(), 1),
            "free_bytes": int(vm.available), "total_bytes": int(vm.total), "gpu": False}


# -- out of memory ----------------------------------------------------------------------------

def is_out_of_memory(err: BaseException) -> bool:
    """True for every way running out of memory shows up: torch.OutOfMemoryError (CUDA),
    Python's MemoryError, a RuntimeError from an allocator ("CUDA out of memory", the CPU's
    "can't allocate memory", MPS's "out of memory"), and attn's own refusal before allocating
    ("does not fit: ...", attn.memory.DoesNotFit).

    The torch type is matched by name, so this needs no torch import."""
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(err).__mro__):
        return True
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or text.startswith("does not fit"))


def oom_message(err: BaseException) -> str:
    """One line for an out-of-memory error: "does not fit: out of memory on cuda:0 (NVIDIA H100)
    (tried to allocate 2.00 GiB)". attn's own "does not fit: ..." is kept as it is."""
    text = str(err)
    if text.startswith("does not fit"):  # already says what it needs and what is free
        return text.splitlines()[0]
    tried = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGTP]?i?B)", text)
    suffix = f" (tried to allocate {tried.group(1)})" if tried else ""
    return f"does not fit: out of memory on {_oom_device(err)}{suffix}"


def _oom_device(err: BaseException) -> str:
    text = str(err)
    if "MPS" in text:
        return "mps"
    if isinstance(err, MemoryError) or "CPU" in text or "can't allocate memory" in text:
        return "cpu"
    # torch only when the failing code has imported it already
    torch = sys.modules.get("torch")
    with contextlib.suppress(Exception):
        if torch is not None and torch.cuda.is_available():
            index = torch.cuda.current_device()
            return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    gpu = re.search(r"GPU (\d+)", text)
    if gpu:
        return f"cuda:{gpu.group(1)}"
    return "cuda" if "CUDA" in text else "cpu"
