"""environment(): where a run happened, described without failing when a probe is missing."""
from __future__ import annotations

import platform
import re

import pytest

import attn
from attn import device as device_module
from attn import environment as env_module
from attn.environment import environment


def test_environment_describes_a_cpu_run() -> None:
    info = environment("cpu")
    assert info["device_kind"] == "cpu"
    assert info["device"].endswith(f"({info['cpu_cores']} cores)")
    assert info["device"].startswith(info["cpu"])
    assert info["python"] == platform.python_version()
    assert info["attn"] == attn.__version__
    assert info["torch"] and info["platform"]
    assert {"driver", "cuda", "transformers"} <= info.keys()
    commit = info["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)


def test_a_cuda_run_is_described_by_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "gpu_name", lambda: "NVIDIA H100 80GB HBM3")
    assert environment("cuda:1")["device"] == "NVIDIA H100 80GB HBM3"
    assert environment("cuda")["device_kind"] == "cuda"
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)
    assert environment("auto")["device_kind"] == environment()["device_kind"] == "cpu"


def test_git_commit_is_none_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    env_module.git_commit.cache_clear()
    monkeypatch.setenv("PATH", "")
    try:
        assert env_module.git_commit() is None
    finally:
        env_module.git_commit.cache_clear()
