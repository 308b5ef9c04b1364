"""attn.jobs.codec: jobs and their results cross as JSON, and decoding builds data, never calls."""
from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import torch

from attn.jobs import JobRunner, Progress, codec
from attn.profiles import Profile
from attn.spec import AttentionSpec
from attn.sweep import Point
from tests import jobfns

WAIT_S = 240.0  # a bound for liveness on a busy 2-core machine (model loads), not a timing


def roundtrip(value):
    return codec.loads(codec.dumps(value))


def same(a, b) -> bool:
    return jobfns.fingerprint(a) == jobfns.fingerprint(b)


def test_plain_values_and_what_json_lacks_come_back_as_they_were():
    value = {"tuple": (1, 2.5, "x", None, True), "int keys": {1: "a", (2, 3): "b"},
             "nested": [{"a": (1, [2, (3,)])}], "bytes": b"\x00\xff", "set": {1, 2}, "frozen": frozenset({"a"}),
             "nan": math.nan, "inf": -math.inf, "big": 2 ** 80, codec.TAG: "a key that looks like the tag"}
    back = roundtrip(value)
    assert same(back, value)
    assert back["tuple"] == (1, 2.5, "x", None, True) and back["int keys"][(2, 3)] == "b"
    assert isinstance(back["set"], set) and isinstance(back["frozen"], frozenset)
    assert math.isnan(back["nan"]) and back[codec.TAG] == "a key that looks like the tag"


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4), np.array([True, False]), np.zeros((0, 5), np.int64),
    np.array(3.5), np.array([1 + 2j], np.complex64), np.arange(20, dtype=np.float64)[::3],
    np.arange(6, dtype=">i4")])
def test_numpy_arrays_keep_dtype_shape_and_bytes(array):
    back = roundtrip({"a": array})["a"]
    assert isinstance(back, np.ndarray) and back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array) and back.flags.writeable


def test_numpy_scalars_stay_numpy_scalars():
    for scalar in (np.float64(0.1), np.int64(-7), np.float32(2.5), np.bool_(True)):
        back = roundtrip(scalar)
        assert type(back) is type(scalar) and back == scalar


@pytest.mark.parametrize("tensor", [
    torch.randn(2, 3, 4), torch.randn(5, dtype=torch.float64), torch.arange(6).reshape(2, 3).t(),
    torch.tensor(True), torch.zeros(0, 3), torch.randn(4, 4).to(torch.bfloat16),
    torch.randn(3, requires_grad=True) * 2])
def test_tensors_keep_dtype_shape_and_values(tensor):
    back = roundtrip([tensor])[0]
    assert isinstance(back, torch.Tensor) and back.dtype == tensor.dtype and back.shape == tensor.shape
    assert torch.equal(back, tensor.detach()) and back.device.type == "cpu"


def test_attn_dataclasses_and_named_tuples_come_back_whole():
    spec = AttentionSpec(seq=128, heads=4, kv_heads=2, head_dim=16, causal=True, window=32)
    back = roundtrip({"spec": spec, "progress": Progress(0.5, "half")})
    assert back["spec"] == spec and back["spec"].window == 32  # from_dict: a variant parameter kept
    assert back["progress"] == Progress(0.5, "half") and type(back["progress"]) is Progress
    point = Point(variant="sdpa", x=128, status="ok", latency_ms=1.5, mode="train")
    assert roundtrip(point) == point
    profile_fields = {f.name: None for f in dataclasses.fields(Profile) if f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING}
    profile = Profile(**{**profile_fields, "variant": "dense", "spec": spec.to_dict(), "latency_ms": 2.0})
    assert roundtrip(profile) == profile


@dataclasses.dataclass
class NotAttns:
    x: int = 1


@pytest.mark.parametrize("value, reason", [
    (lambda: None, "cannot send a builtins.function"),
    (np.array([object()]), "numbers and bools only"),
    (NotAttns(), "only module-level classes of attn's modules"),
    (open, "cannot send"),
    ({"file": sys.stdout}, "cannot send"),
])
def test_what_is_not_data_cannot_be_encoded(value, reason):
    with pytest.raises(TypeError, match=reason):
        codec.dumps(value)


@pytest.mark.parametrize("message, reason", [
    ({codec.TAG: "dataclass", "cls": "subprocess:Popen", "fields": {}}, "not allowed"),
    ({codec.TAG: "dataclass", "cls": "antigravity:X", "fields": {}}, "not allowed"),
    ({codec.TAG: "dataclass", "cls": "attn.jobs.codec:loads", "fields": {}}, "not a dataclass"),
    ({codec.TAG: "namedtuple", "cls": "attn.spec:AttentionSpec", "items": []}, "not a named tuple"),
    ({codec.TAG: "ndarray", "dtype": "O", "shape": [1], "b64": "AAAAAAAAAAA="}, "not accepted"),
    ({codec.TAG: "ndarray", "dtype": "<f4", "shape": [3], "b64": "AAAAAA=="}, "cannot hold"),
    ({codec.TAG: "tensor", "dtype": "Tensor", "shape": [], "b64": ""}, "not accepted"),
    ({codec.TAG: "pickle", "data": ""}, "unknown tag"),
])
def test_decoding_refuses_what_the_codec_would_not_have_written(message, reason):
    with pytest.raises(ValueError, match=reason):
        codec.loads(json.dumps(message).encode())
    assert "antigravity" not in sys.modules  # a module outside attn is never imported


def test_a_job_names_a_module_level_function_of_an_allowed_module():
    fn, args, kwargs = codec.load_job(codec.job_payload(jobfns.add, (1,), {"b": 2}))
    assert (fn, args, kwargs) == (jobfns.add, (1,), {"b": 2})
    with pytest.raises(TypeError, match="not one"):
        codec.job_payload(json.dumps, (), {})
    with pytest.raises(TypeError, match="module level"):
        codec.job_payload(lambda report: None, (), {})
    for module, name in (("subprocess", "run"), ("attn.tasks", "AttentionSpec"), ("attn.tasks", "asdict"),
                         ("os", "system"), ("attn.tasks", "__import__")):
        payload = json.dumps({"module": module, "name": name, "args": {codec.TAG: "tuple", "items": []},
                              "kwargs": {}}).encode()
        with pytest.raises(ValueError):
            codec.load_job(payload)


def test_an_allowed_module_must_be_a_module_name():
    with pytest.raises(ValueError, match="not a module name"):
        codec.allow_module("tests.jobfns; import os")


# every kind of job attn.tasks has, through the real worker process: the result and each partial
# item must arrive as the worker held them (types, dtypes, shapes, bytes)
SPEC = AttentionSpec(seq=64, heads=2, head_dim=16, causal=True).to_dict()
TASKS = {
    "profile random": ("profile_task", (SPEC, "sdpa", 0.02), {}),
    "profile train": ("profile_task", (SPEC, "dense", 0.02, None, "train"), {}),
    "sweep": ("sweep_task", (SPEC, ["dense", "linear"], [32, 64], "seq", 0.02), {}),
    "calibrate": ("calibrate_task", ("cpu",), {}),
    "maps": ("maps_task", (SPEC, "sliding_window", 1, 32, "max", 0.5), {}),
    "maps of a decode step": ("maps_task", (AttentionSpec(seq=2, kv_seq=64, heads=2, head_dim=16).to_dict(), "sdpa",
                                            0, 16, "mean", 1.0, None, "decode"), {}),
    "profile on a model's text": ("profile_task", (SPEC, "sliding_window", 0.02,
                                                   {"kind": "model", "text": "The cat sat on the mat."}), {}),
    "model timing": ("model_timing_task", ("minilm", "The cat sat on the mat.", 16, 1), {}),
    "model serving": ("model_serving_task", ("llama-gqa", [16, 32], 2, 30.0), {}),
    "model train step": ("model_train_step_task", ("llama-gqa", [16, 32], 30.0), {}),
    "plan": ("plan_task", ("minilm", "0-4:sliding_window:4,5:sdpa", 1, None, None, 24, 1, False, 12), {}),
    "implementations": ("model_implementations_task", ("minilm", "The cat sat.", 8, 1), {}),
}
FAST = {"profile random", "profile train", "sweep", "maps", "maps of a decode step"}


@pytest.fixture(scope="module")
def worker():
    with JobRunner() as runner:
        yield runner


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in TASKS])
def test_every_kind_of_job_crosses_the_worker_unchanged(worker, name):
    task, args, kwargs = TASKS[name]
    handle = worker.submit(jobfns.traced, task, *args, **kwargs)
    got = handle.result(timeout=WAIT_S)
    assert jobfns.fingerprint(got["result"]) == got["fingerprint"]
    assert [jobfns.fingerprint(item) for item in handle.partials()] == got["partials"]
    if name == "sweep":
        assert len(handle.partials()) == 4
    if name == "plan":
        assert isinstance(got["result"]["maps"]["before"], np.ndarray)
