"""Where a run happened: device, driver, library versions and the code's git commit.

Saved with every run so that two numbers from different machines or releases are never compared
without the reader knowing it. Every probe is allowed to fail: a missing driver, git or
transformers gives None, never an exception.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import attn
from attn import device as device_module


def environment(device: str | None = None) -> dict[str, Any]:
    """Describe this machine and software for a run on `device` ("cpu", "cuda" or None/"auto").

    `device` names the processor the run used: a CPU run on a machine with a GPU is described by
    its CPU. None and "auto" mean the GPU when CUDA is available, as `resolve_device` does.
    Keys: device (a readable name), device_kind ("cpu" | "cuda"), cpu, cpu_cores, driver, cuda,
    torch, transformers, python, platform, attn, git_commit. Unknown values are None.
    """
    kind = _device_kind(device)
    name = device_module.gpu_name() if kind == "cuda" else _cpu_description()
    return {"device": name, "device_kind": kind, **_static_environment()}


def _device_kind(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if device_module.cuda_available() else "cpu"
    # "cuda:1" and friends are still a GPU
    return "cuda" if str(device).startswith("cuda") else "cpu"


@functools.lru_cache(maxsize=1)
def _cpu_description() -> str:
    return f"{device_module.cpu_name()} ({os.cpu_count() or '?'} cores)"


@functools.lru_cache(maxsize=1)
def _static_environment() -> dict[str, Any]:
    try:
        import torch

        torch_version, cuda_version = str(torch.__version__), torch.version.cuda
    except Exception:
        torch_version, cuda_version = None, None
    return {
        "cpu": device_module.cpu_name(),
        "cpu_cores": os.cpu_count(),
        "driver": driver_version(),
        "cuda": cuda_version,
        "torch": torch_version,
        # read from the installed metadata: importing transformers takes seconds
        "transformers": _package_version("transformers"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "attn": attn.__version__,
        "git_commit": git_commit(),
    }


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def driver_version() -> str | None:
    """The NVIDIA driver version through NVML, or None without a driver or pynvml."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit attn's own source is checked out at, or None when it is not a git checkout.

    The repository must be attn's: an attn installed in a virtual environment that happens to
    sit inside some other repository must not report that repository's commit.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != 2:
        return None
    toplevel, commit = lines
    try:
        if Path(toplevel).resolve() != root:
            return None
    except OSError:
        return None
    return commit
