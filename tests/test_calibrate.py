"""Device calibration: measured rates and bandwidth, the cache under ATTN_HOME (set to a temporary
folder for every test by conftest), and the roofline they give."""
import json
import os
from pathlib import Path

import pytest
import torch

from attn import calibrate
from attn.calibrate import Calibration


def cache_file() -> Path:
    return Path(os.environ["ATTN_HOME"]) / "calibration.json"


@pytest.fixture
def fake_measurements(monkeypatch):
    """Instant, known figures instead of real matmuls and copies; counts how often they run."""
    calls = []

    def rate(device, dtype, n, repeats=5):
        calls.append(("matmul", dtype))
        return 2.0

    def bandwidth(device, nbytes, repeats=5):
        calls.append(("copy", nbytes))
        return 40.0
    monkeypatch.setattr(calibrate, "matmul_tflops", rate)
    monkeypatch.setattr(calibrate, "copy_gbps", bandwidth)
    return calls


def test_calibrate_measures_this_cpu_and_caches_it():
    cal = calibrate.calibrate("cpu")
    assert set(cal.matmul_tflops) == {"float32", "bfloat16", "float16"}
    assert all(rate > 0 for rate in cal.matmul_tflops.values())
    assert cal.bandwidth_gbps > 0
    assert cal.torch == torch.__version__ and torch.__version__ in cal.device
    assert cal.sizes["copy_bytes"] == 2**28 and cal.measured_at.endswith("Z")
    on_disk = json.loads(cache_file().read_text())
    assert on_disk[cal.device]["bandwidth_gbps"] == cal.bandwidth_gbps
    assert calibrate.cached("cpu") == cal


def test_a_cached_calibration_is_not_measured_again_unless_forced(fake_measurements):
    first = calibrate.calibrate("cpu")
    assert len(fake_measurements) == 4  # three matmul rates and one copy
    assert calibrate.calibrate("cpu") == first and len(fake_measurements) == 4
    calibrate.calibrate("cpu", force=True)
    assert len(fake_measurements) == 8


def test_nothing_cached_before_the_first_calibration():
    assert calibrate.cached("cpu") is None
    assert not cache_file().exists()


@pytest.mark.parametrize("content", [
    "{not json",  # a write cut short
    "[1, 2, 3]",  # valid JSON, not a mapping
    "",
])
def test_a_corrupt_cache_file_is_ignored_and_measured_again(fake_measurements, content):
    cache_file().parent.mkdir(parents=True, exist_ok=True)
    cache_file().write_text(content)
    assert calibrate.cached("cpu") is None
    cal = calibrate.calibrate("cpu")
    assert fake_measurements and cal.bandwidth_gbps == 40.0
    assert calibrate.cached("cpu") == cal  # the file was rewritten whole
    json.loads(cache_file().read_text())


def test_an_entry_this_version_cannot_read_is_measured_again(fake_measurements):
    key = calibrate.device_key("cpu")
    cache_file().parent.mkdir(parents=True, exist_ok=True)
    cache_file().write_text(json.dumps({
        key: {"device": key, "peak": 3},  # fields of another version
        "other machine | torch 0.1": {"device": "x", "torch": "0.1", "matmul_tflops": {},
                                      "bandwidth_gbps": 1.0},
    }))
    assert calibrate.cached("cpu") is None
    calibrate.calibrate("cpu")
    everything = json.loads(cache_file().read_text())
    assert "other machine | torch 0.1" in everything  # another device's entry is kept
    assert everything[key]["bandwidth_gbps"] == 40.0

    everything[key]["matmul_tflops"] = "fast"  # right names, wrong kinds of value
    cache_file().write_text(json.dumps(everything))
    assert calibrate.cached("cpu") is None


def test_attainable_is_the_lower_of_the_peak_and_intensity_times_bandwidth():
    cal = Calibration(device="hand-made", torch="x", matmul_tflops={"bfloat16": 100.0},
                      bandwidth_gbps=2000.0)
    # 2000 GB/s carries 2 TFLOP/s per FLOP/byte: memory-bound below 50 FLOP/byte
    assert cal.attainable_tflops("bfloat16", 10.0) == pytest.approx(20.0)
    assert cal.attainable_tflops("bfloat16", 1000.0) == pytest.approx(100.0)
    assert cal.attainable_tflops("bfloat16", 50.0) == pytest.approx(100.0)
    assert cal.ridge_intensity("bfloat16") == pytest.approx(50.0)
    assert cal.attainable_tflops("float64", 10.0) is None  # not measured: no roof
    assert cal.ridge_intensity("float64") is None


def test_the_measurements_themselves_on_small_sizes():
    assert calibrate.matmul_tflops("cpu", torch.float32, 128, repeats=2) > 0
    assert calibrate.copy_gbps("cpu", 2**20, repeats=2) > 0


@pytest.mark.parametrize("bandwidth, rates", [(0, {"float32": 1.0}), (float("nan"), {}), (True, {}),
                                              (1.0, {"float32": 0}), (1.0, {"float32": float("inf")})])
def test_a_cached_rate_of_zero_or_nan_is_measured_again(fake_measurements, bandwidth, rates):
    # found by tests/test_fuzz.py: a damaged file's bandwidth of 0 was used, and a decode's
    # floor (bytes read / bandwidth) would divide by it
    key = calibrate.device_key("cpu")
    cache_file().parent.mkdir(parents=True, exist_ok=True)
    cache_file().write_text(json.dumps({key: {"device": key, "torch": "x", "matmul_tflops": rates,
                                              "bandwidth_gbps": bandwidth}}))
    assert calibrate.cached("cpu") is None
    assert calibrate.calibrate("cpu").bandwidth_gbps == 40.0
