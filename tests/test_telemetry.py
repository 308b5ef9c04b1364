"""The telemetry sampler: ring buffer, thread, the no-driver path, a fake GPU, energy arithmetic."""
import json
import logging
import time
from types import SimpleNamespace

import pynvml
import pytest

from attn import nvml, telemetry
from attn.nvml import GpuReading, NvmlReader
from attn.telemetry import (EnergyEstimate, Sample, Sampler, energy_j, energy_per_token_j, monitor,
                            summarise)


class FakeGpu:
    """Stands in for NVML: 250 W, and an energy counter that grows 250 mJ per ms of wall time."""
    name = "Fake H100"

    def __init__(self):
        self.reads = 0
        self.fail = False

    def read(self) -> GpuReading:
        if self.fail:
            raise RuntimeError("GPU has fallen off the bus")
        self.reads += 1
        return GpuReading(gpu_util_pct=90.0, gpu_mem_used_bytes=10 << 30, gpu_mem_total_bytes=80 << 30,
                          power_w=250.0, temperature_c=61.0, sm_clock_mhz=1980.0,
                          energy_mj=int(time.time() * 250_000))


@pytest.fixture
def no_driver(monkeypatch):
    """NVML as on a machine without the NVIDIA driver, even where one is installed."""
    def fail():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    monkeypatch.setattr(pynvml, "nvmlInit", fail)


def at(t, **fields) -> Sample:
    return Sample(t=t, **fields)


# ---- the sampler ----

def test_ring_buffer_keeps_the_newest_capacity_samples():
    s = Sampler(capacity=3, gpu_reader=FakeGpu())
    for t in range(5):
        s.add(at(float(t)))
    assert [x.t for x in s.samples()] == [2.0, 3.0, 4.0]
    assert s.latest().t == 4.0


def test_samples_since_is_strictly_after_so_polling_sees_no_duplicates():
    s = Sampler(gpu_reader=FakeGpu())
    for t in (1.0, 2.0, 3.0):
        s.add(at(t))
    assert [x.t for x in s.samples(since=2.0)] == [3.0]
    assert s.samples(since=3.0) == []
    assert Sampler(gpu_reader=FakeGpu()).latest() is None


def test_start_stop_collects_samples_in_order():
    with Sampler(interval_s=0.05, gpu_reader=FakeGpu()) as s:
        assert s.running
        time.sleep(0.5)
    assert not s.running
    got = s.samples()
    assert 3 <= len(got) <= 15  # ~10 at 20 Hz; generous for a busy 2-core machine
    assert all(a.t < b.t for a, b in zip(got, got[1:]))
    assert s.busy_s >= 0 and s.ticks >= len(got)
    time.sleep(0.12)
    assert len(s.samples()) == len(got)  # stopped means stopped


def test_cpu_side_fields_are_filled():
    s = Sampler(gpu_reader=FakeGpu())
    x = s.read_sample()
    assert 0 <= x.cpu_pct <= 100 and x.process_cpu_pct >= 0
    assert 0 < x.process_rss_bytes < x.sys_mem_total_bytes
    assert 0 < x.sys_mem_used_bytes <= x.sys_mem_total_bytes


def test_without_a_driver_gpu_fields_are_none_and_the_reason_is_said_once(no_driver, caplog):
    with caplog.at_level(logging.INFO, logger="attn.telemetry"):
        with Sampler(interval_s=0.02) as s:
            s.sample_after(time.time(), timeout_s=2)
            s.sample_after(time.time(), timeout_s=2)
    assert s.gpu_status == nvml.NO_DRIVER_STATUS
    assert not s.gpu_available
    assert [r.getMessage() for r in caplog.records] == [nvml.NO_DRIVER_STATUS]
    got = s.samples()
    assert len(got) >= 2
    assert all(getattr(x, f) is None for x in got for f in nvml.GPU_FIELDS)
    assert all(x.cpu_pct is not None and x.process_rss_bytes for x in got)
    assert s.device_name  # the CPU's name stands in


def test_a_fake_gpu_reader_fills_the_gpu_fields():
    gpu = FakeGpu()
    with Sampler(interval_s=0.02, gpu_reader=gpu) as s:
        x = s.sample_after(time.time(), timeout_s=2)
    assert s.gpu_available and s.device_name == "Fake H100"
    assert (x.power_w, x.gpu_util_pct, x.sm_clock_mhz) == (250.0, 90.0, 1980.0)
    assert x.gpu_mem_total_bytes == 80 << 30 and x.energy_mj > 0
    assert gpu.reads >= 1


def test_a_gpu_that_fails_mid_run_is_reported_and_recovers():
    gpu = FakeGpu()
    s = Sampler(gpu_reader=gpu)
    gpu.fail = True
    x = s.read_sample()
    assert x.power_w is None and x.cpu_pct is not None  # the CPU side survives
    assert not s.gpu_available and "fallen off the bus" in s.gpu_status
    gpu.fail = False
    assert s.read_sample().power_w == 250.0 and s.gpu_available


def test_nvml_reader_maps_nvml_units_and_skips_unsupported_counters(monkeypatch):
    calls = {"energy": 0}

    def no_energy(handle):
        calls["energy"] += 1
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    for name, fn in {
        "nvmlInit": lambda: None, "nvmlShutdown": lambda: None,
        "nvmlDeviceGetHandleByIndex": lambda i: f"handle{i}",
        "nvmlDeviceGetName": lambda h: b"NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUtilizationRates": lambda h: SimpleNamespace(gpu=87, memory=40),
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(used=3 << 30, total=80 << 30, free=77 << 30),
        "nvmlDeviceGetPowerUsage": lambda h: 312_500,  # milliwatts
        "nvmlDeviceGetTemperature": lambda h, sensor: 55,
        "nvmlDeviceGetClockInfo": lambda h, clock: 1755,
        "nvmlDeviceGetTotalEnergyConsumption": no_energy,
    }.items():
        monkeypatch.setattr(pynvml, name, fn)
    reader, status = nvml.open_nvml(0)
    assert isinstance(reader, NvmlReader) and status == "GPU 0: NVIDIA H100 80GB HBM3 (NVML)"
    first, second = reader.read(), reader.read()
    assert first == second == GpuReading(87.0, 3 << 30, 80 << 30, 312.5, 55.0, 1755.0, None)
    assert calls["energy"] == 1  # NotSupported is remembered, not asked ten times a second


def test_marks_are_kept_in_order_and_filtered_by_since():
    s = Sampler(gpu_reader=FakeGpu())
    s.mark("job 1 start", t=10.0)
    s.mark("job 1 end", t=12.0)
    t = s.mark("job 2 start")
    assert s.marks() == [(10.0, "job 1 start"), (12.0, "job 1 end"), (t, "job 2 start")]
    assert s.marks(since=10.0) == [(12.0, "job 1 end"), (t, "job 2 start")]


def test_bad_settings_are_refused_in_words():
    with pytest.raises(ValueError, match="interval_s"):
        Sampler(interval_s=0, gpu_reader=FakeGpu())
    with pytest.raises(ValueError, match="capacity"):
        Sampler(capacity=0, gpu_reader=FakeGpu())


def test_shared_sampler_is_one_running_sampler_per_process(monkeypatch, no_driver):
    monkeypatch.setattr(telemetry, "_shared", None)
    a = telemetry.shared_sampler()
    try:
        assert a is telemetry.shared_sampler() and a.running
    finally:
        a.stop()


# ---- energy ----

def test_energy_counter_difference_in_joules():
    samples = [at(0.0, energy_mj=1_000, power_w=1.0), at(1.0, energy_mj=301_000, power_w=1.0),
               at(2.0, energy_mj=601_000, power_w=1.0)]
    e = energy_j(samples, 0.0, 2.0)
    assert e.method == "nvml_counter" and e.joules == pytest.approx(600.0)
    # inside the window the counter is interpolated: a quarter second at 300 W on each side
    assert energy_j(samples, 0.5, 1.5).joules == pytest.approx(300.0)


def test_constant_power_integrates_to_power_times_time():
    samples = [at(t / 10, power_w=100.0) for t in range(21)]
    e = energy_j(samples, 0.0, 2.0)
    assert e.method == "power_integral" and e.joules == pytest.approx(200.0)
    assert e.mean_power_w == pytest.approx(100.0)


def test_linear_ramp_is_integrated_exactly_with_interpolated_ends():
    samples = [at(0.0, power_w=0.0), at(1.0, power_w=50.0), at(2.0, power_w=100.0)]
    assert energy_j(samples, 0.0, 2.0).joules == pytest.approx(100.0)
    # power at 0.5 s is 25 W and at 1.5 s is 75 W: mean 50 W over one second
    assert energy_j(samples, 0.5, 1.5).joules == pytest.approx(50.0)
    assert energy_j(list(reversed(samples)), 0.5, 1.5).joules == pytest.approx(50.0)


def test_counter_missing_at_one_end_falls_back_to_power():
    samples = [at(0.0, power_w=100.0), at(1.0, power_w=100.0, energy_mj=5), at(2.0, power_w=100.0, energy_mj=9)]
    e = energy_j(samples, 0.0, 2.0)
    assert e.method == "power_integral" and e.joules == pytest.approx(200.0)


def test_a_counter_that_went_backwards_is_not_trusted():
    samples = [at(0.0, power_w=10.0, energy_mj=900_000), at(1.0, power_w=10.0, energy_mj=100)]
    e = energy_j(samples, 0.0, 1.0)
    assert e.method == "power_integral" and e.joules == pytest.approx(10.0)


def test_energy_is_unavailable_without_gpu_readings_or_outside_the_samples():
    cpu_only = [at(0.0, cpu_pct=10.0), at(1.0, cpu_pct=20.0)]
    e = energy_j(cpu_only, 0.0, 1.0)
    assert (e.joules, e.method) == (None, "unavailable") and "no power" in e.reason
    late = energy_j([at(0.0, power_w=5.0), at(1.0, power_w=5.0)], 0.5, 1.5)
    assert late.joules is None and "wait for a sample after the end" in late.reason
    with pytest.raises(ValueError, match="before t0"):
        energy_j(cpu_only, 1.0, 0.0)


def test_energy_per_token():
    e = EnergyEstimate(joules=12.0, method="nvml_counter", t0=0.0, t1=1.0)
    assert energy_per_token_j(e, 480) == pytest.approx(0.025)
    assert energy_per_token_j(3.0, 3) == pytest.approx(1.0)
    assert energy_per_token_j(EnergyEstimate(None, "unavailable", 0.0, 1.0), 10) is None
    assert energy_per_token_j(e, 0) is None
    with pytest.raises(ValueError):
        energy_per_token_j(e, -1)


def test_energy_from_a_live_run_with_a_fake_gpu_matches_its_power():
    with Sampler(interval_s=0.02, gpu_reader=FakeGpu()) as s:
        t0 = s.sample_after(time.time(), timeout_s=2).t
        t1 = s.sample_after(t0 + 0.1, timeout_s=2).t
    e = energy_j(s.samples(), t0, t1)
    assert e.method == "nvml_counter"
    assert e.mean_power_w == pytest.approx(250.0, rel=0.05)  # the fake counter is 250 W of wall time


# ---- monitor ----

def test_summarise_gives_mean_and_max_and_none_for_metrics_never_read():
    summary = summarise([at(0.0, cpu_pct=10.0), at(1.0, cpu_pct=30.0)])
    assert summary["cpu_pct"] == {"mean": 20.0, "max": 30.0}
    assert summary["power_w"] == {"mean": None, "max": None}


def test_monitor_returns_columns_summary_and_status_as_json():
    out = monitor(0.25, interval_s=0.05, gpu_reader=FakeGpu())
    assert {"device", "gpu_status", "gpu_available", "seconds", "count", "samples", "summary",
            "energy"} <= out.keys()
    assert out["device"] == "Fake H100" and out["count"] >= 2
    assert set(out["samples"]) == set(telemetry.SAMPLE_FIELDS)
    assert len(out["samples"]["t"]) == out["count"]
    assert out["summary"]["power_w"]["max"] == 250.0
    assert out["energy"]["method"] == "nvml_counter"
    json.dumps(out)  # what the CLI prints


def test_monitor_refuses_a_non_positive_duration():
    with pytest.raises(ValueError, match="seconds"):
        monitor(0)
