"""The machine: which device runs work, its names and free memory, ATTN_HOME, and the one
out-of-memory classifier that the profiler, the sweeps and the job runner share."""
from pathlib import Path

import pytest
import torch

from attn import device
from attn.device import attn_home, is_out_of_memory, oom_message
from attn.memory import DoesNotFit


def test_is_out_of_memory_tells_oom_from_other_failures():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 9 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))


def test_every_out_of_memory_that_either_old_classifier_knew_is_still_known():
    # what the job runner recognised besides the profiler's two
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9 GiB)"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    assert is_out_of_memory(DoesNotFit("does not fit: dense at seq 1000000 needs ~119 GiB"))
    # a subclass of torch's error, matched by name without importing torch
    assert is_out_of_memory(type("OutOfMemoryError", (RuntimeError,), {})("no memory"))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))


def test_oom_message_names_the_device_and_keeps_attns_own_words():
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    assert oom_message(cpu) == "does not fit: out of memory on cpu"
    assert oom_message(MemoryError()) == "does not fit: out of memory on cpu"
    refusal = DoesNotFit("does not fit: dense at seq 9 needs ~1 GiB, 0 B free on cpu\nmore")
    assert oom_message(refusal) == "does not fit: dense at seq 9 needs ~1 GiB, 0 B free on cpu"
    if not torch.cuda.is_available():
        gpu = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has 80 GiB")
        assert oom_message(gpu) == "does not fit: out of memory on cuda:1 (tried to allocate 2.00 GiB)"


def test_attn_home_follows_the_variable_and_defaults_to_dot_attn(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ATTN_HOME", str(tmp_path / "elsewhere"))
    assert attn_home() == tmp_path / "elsewhere"
    monkeypatch.delenv("ATTN_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert attn_home() == tmp_path / "home" / ".attn"


def test_the_cpu_is_named_and_summarised():
    assert device.cpu_name()
    assert device.device_name("cpu").startswith("CPU (")
    summary = device.device_summary("cpu")
    assert summary["gpu"] is False and summary["name"] == device.device_name("cpu")
    # the CPU's model, as a run's environment names it, where the calibration's name says "CPU"
    assert summary["label"] == summary["name"].replace("CPU", device.cpu_name(), 1) != summary["name"]
    assert 0 < summary["free_bytes"] <= summary["total_bytes"]
    assert 0 < device.free_bytes("cpu") < summary["total_bytes"]
    assert device.resolve_device("cpu") == "cpu"
    assert device.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")

