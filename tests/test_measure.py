"""The profiler: timing statistics, known work, peak memory, the FLOP cross-check, errors, and
the ways a profile refuses (does not fit, unsupported). The CUDA paths are thin wrappers around
pure pieces (settle_then_repeat, energy_per_call) that are exercised here with fakes."""
import itertools
import re
import statistics
from types import SimpleNamespace

import pytest
import torch

from attn import calibrate, measure, variants
from attn.inputs import random_qkv
from attn.accuracy import REFERENCE_BYTES, errors, sample_rows
from attn.flopcheck import flops_note
from attn.measure import DoesNotFit, profile
from attn.memory import check_fits, cpu_peak_bytes, peak_from_memory_events
from attn.nvml import energy_per_call
from attn.timing import Timing, repeats_for_budget, settle_then_repeat, settled, summarize, time_cpu
from attn.spec import AttentionSpec

TINY = AttentionSpec(batch=1, seq=64, heads=2, head_dim=16)


def matmul_chain(steps: int):
    """Known work: `steps` identical small matmuls, so the time is proportional to `steps`."""
    a = torch.randn(128, 128) / 128**0.5

    def fn():
        x = a
        for _ in range(steps):
            x = torch.mm(x, a).tanh_()
        return x
    return fn


# -- timing statistics ------------------------------------------------------------------------
def test_summarize_gives_the_median_and_deciles_of_the_repeats():
    t = summarize([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0], warmup=2, method="m")
    assert t.median_ms == 5.5
    assert t.p10_ms == pytest.approx(1.9) and t.p90_ms == pytest.approx(9.1)
    assert t.repeats == 10 and t.warmup == 2 and t.method == "m"
    assert t.times_ms[0] == 5.0  # kept in the order measured


def test_summarize_of_one_time_and_of_none():
    t = summarize([2.5], warmup=0, method="m")
    assert (t.median_ms, t.p10_ms, t.p90_ms, t.repeats) == (2.5, 2.5, 2.5, 1)
    with pytest.raises(ValueError, match="no repeat times"):
        summarize([], warmup=0, method="m")


def test_settled_means_the_last_three_times_agree_within_five_percent():
    assert settled([30.0, 12.0, 10.0, 10.2, 9.9])
    assert not settled([10.0, 10.0, 12.0])
    assert not settled([10.0, 10.0])  # too few to say
    assert settled([10.0, 10.4, 10.0], tolerance=0.05)
    assert not settled([10.0, 10.6, 10.0], tolerance=0.05)


def test_repeats_fill_the_budget_within_bounds():
    assert repeats_for_budget(1.0, 1.0) == 1000
    assert repeats_for_budget(2.0, 0.5) == 250
    assert repeats_for_budget(500.0, 1.0) == 10  # never fewer than lo
    assert repeats_for_budget(0.0001, 1.0) == 10_000  # never more than hi
    assert repeats_for_budget(0.0, 1.0) == 10_000  # a zero estimate does not divide by zero


def test_settle_then_repeat_warms_up_until_times_settle_then_fills_the_budget():
    # what the GPU path sees: a slow first call, then times that settle at 2 ms
    script = itertools.chain([40.0, 9.0, 2.2, 2.0, 2.0, 2.02], itertools.repeat(2.0))
    calls = []

    def timed_once():
        calls.append(1)
        return next(script)

    t = settle_then_repeat(timed_once, budget_s=0.1, max_warmup_s=10.0, method="fake events")
    assert t.warmup == 6  # 2.2 was still more than 5% off; 2.0, 2.0, 2.02 settled
    assert t.repeats == 50 == len(t.times_ms)  # 0.1 s at 2 ms
    assert t.median_ms == 2.0 and t.method == "fake events"
    assert len(calls) == t.warmup + t.repeats


def test_settle_then_repeat_gives_up_warming_after_its_time_limit():
    times = itertools.cycle([1.0, 3.0])  # never settles
    clock = itertools.count(0.0, 0.25)  # each reading of the clock is 0.25 s later
    t = settle_then_repeat(lambda: next(times), budget_s=0.02, max_warmup_s=1.0, method="m",
                           clock=lambda: next(clock))
    # warm-up times 1, 3, 1 are read at 0.25, 0.5 and 0.75 s; at 1.0 s the limit is reached
    assert t.warmup == 3
    assert t.repeats == 20  # 0.02 s at the median of the last three warm-up times, 1 ms
    assert t.p10_ms <= t.median_ms <= t.p90_ms


# -- the profiler on known work ---------------------------------------------------------------
@pytest.mark.parametrize("work_ms", [1.0, 2.0, 4.0, 0.004])
def test_latency_is_the_work_of_one_call(work_ms):
    """n, 2n and 4n of work read 1x, 2x and 4x: on a scripted clock that only the call moves, each
    call takes exactly `work_ms`, so time_cpu's per-call median must read exactly that, whatever
    block size blocked_autorange picks (it times blocks of calls and divides). Real clocks on a
    shared machine are for bench.profiler_fidelity and `attn selftest`'s timer check, not for a
    unit test."""
    now = [0.0]

    def call():
        now[0] += work_ms / 1e3

    t = time_cpu(call, budget_s=0.05, timer=lambda: now[0])
    assert t.median_ms == pytest.approx(work_ms, rel=1e-6)
    assert t.p10_ms == pytest.approx(work_ms, rel=1e-6) and t.p90_ms == pytest.approx(work_ms, rel=1e-6)
    assert now[0] >= 0.05  # the budget is spent on the scripted clock, not the wall's


def test_time_cpu_reports_consistent_statistics():
    t = time_cpu(matmul_chain(20), budget_s=0.05)
    assert isinstance(t, Timing)
    assert t.repeats == len(t.times_ms) >= 1
    assert min(t.times_ms) <= t.p10_ms <= t.median_ms <= t.p90_ms <= max(t.times_ms)
    assert t.median_ms == statistics.median(t.times_ms)
    assert re.fullmatch(rf"torch.utils.benchmark: {t.repeats} blocks of \d+ calls", t.method)
    assert t.elapsed_s >= 0.05  # blocked_autorange measures at least the budget
    assert t.warmup == 1


def test_time_cpu_runs_the_call_with_torch_thread_count():
    # torch.utils.benchmark's Timer would run it on one thread unless told otherwise
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        time_cpu(lambda: seen.append(torch.get_num_threads()), budget_s=0.001, warmup=0)
    finally:
        torch.set_num_threads(before)
    assert set(seen) == {2}


# -- memory -----------------------------------------------------------------------------------
def test_peak_of_hand_made_memory_events():
    # (time, bytes): +100, +50, -100, +200 -> running 100, 150, 50, 250; then all freed
    events = [(3, 200), (0, 100), (1, 50), (2, -100), (4, -250)]
    assert peak_from_memory_events(events) == 250
    assert peak_from_memory_events([]) == 0
    # freeing what was there before the call and allocating less: never above the start
    assert peak_from_memory_events([(0, -100), (1, 60)]) == 0


def test_cpu_peak_bytes_sees_a_tensor_made_and_freed_inside_the_call():
    size = 2**24 * 4  # 64 MiB of float32
    held = torch.ones(2**22)  # allocated before the call: not part of its peak

    def fn():
        t = torch.empty(2**24, dtype=torch.float32)
        t.fill_(1.0)
        del t
    peak = cpu_peak_bytes(fn)
    assert peak == pytest.approx(size, rel=0.10)
    assert held.numel() == 2**22


# -- FLOPs ------------------------------------------------------------------------------------
def test_the_flop_counter_agrees_with_the_cost_model_for_dense_non_causal():
    prof = profile(TINY, "dense", device="cpu", budget_s=0.01)
    # the counter sees q @ k^T and w @ v: 2 * 2 * B*H*S*KV*D, the useful FLOPs without a mask
    assert prof.flops == prof.flops_counted == 4 * 1 * 2 * 64 * 64 * 16
    assert prof.flops_note.endswith("torch's FLOP counter agrees")
    assert prof.achieved_tflops == pytest.approx(prof.flops / (prof.latency_ms * 1e-3) / 1e12)


def test_the_counter_counts_causal_dense_as_if_every_pair_were_computed():
    spec = TINY.with_(causal=True)
    prof = profile(spec, "dense", device="cpu", budget_s=0.01)
    assert prof.flops == 4 * 2 * 16 * (64 * 65 // 2)
    assert prof.flops_counted == 4 * 2 * 16 * 64 * 64
    assert "as if it were dense" in prof.flops_note


def test_the_counter_sees_nothing_in_sdpa_on_the_cpu_and_the_note_says_so():
    # flash named: on tiny shapes `auto` may pick the math backend, whose matmuls are counted
    prof = profile(TINY.with_(backend="flash"), "sdpa", device="cpu", budget_s=0.01)
    assert prof.flops_counted == 0 and prof.flops > 0 and prof.backend == "flash"
    assert "counter says 0: the counter sees no FLOPs in the CPU's fused SDPA kernel" in prof.flops_note
    math = profile(TINY.with_(backend="math"), "sdpa", device="cpu", budget_s=0.01)
    assert math.flops_counted == math.flops and math.flops_note.endswith("agrees")


def test_flops_note_wording_for_each_kind_of_disagreement():
    spec = TINY
    assert "agrees" in flops_note("dense", spec, 100, 100, "cpu")
    assert "no matmuls" in flops_note("dense", spec, 100, 0, "cuda")
    assert "computed-then-masked" in flops_note("topk", spec.with_(causal=True), 100, 141, "cpu")
    approx = flops_note("linear", spec, 100, 93, "cpu")
    assert "matmuls only (0.93x)" in approx and "feature maps" in approx
    assert "0.50x" in flops_note("dense", spec, 100, 50, "cpu")
    assert "93" in approx  # the counter's own figure is always shown


# -- errors -----------------------------------------------------------------------------------
def test_kernel_and_approx_errors_of_an_exact_and_an_approximate_variant():
    q, k, v = random_qkv(TINY)
    dense_out = variants.get("dense").run(q, k, v, TINY)
    kernel, approx, rows = errors(dense_out, q, k, v, TINY, "dense")
    assert kernel == approx < 1e-5 and rows == 64  # float32 against float64, every row
    linear_out = variants.get("linear").run(q, k, v, TINY)
    kernel, approx, rows = errors(linear_out, q, k, v, TINY, "linear")
    assert kernel < 1e-5  # right about its own math
    assert approx > 0.05  # and not exact attention


def test_errors_are_relative_to_the_float64_reference():
    q, k, v = random_qkv(TINY)
    exact = variants.get("dense").run(q.double(), k.double(), v.double(), TINY)
    kernel, approx, _ = errors(exact * 1.01, q, k, v, TINY, "dense")
    assert kernel == pytest.approx(0.01, rel=1e-6) and approx == pytest.approx(0.01, rel=1e-6)


def test_errors_on_sampled_rows_count_only_those_rows():
    spec = TINY.with_(seq=300)
    q, k, v = random_qkv(spec)
    out = variants.get("dense").run(q, k, v, spec)
    kernel, _, rows = errors(out, q, k, v, spec, "dense", max_rows=32)
    assert rows == 32 and kernel < 1e-5


def test_sample_rows_all_when_few_else_evenly_spaced_within_bounds():
    assert sample_rows(TINY, max_rows=256) is None  # 64 rows: all of them
    rows = sample_rows(TINY.with_(seq=1000), max_rows=50)
    assert rows.numel() == 50
    assert rows[0] == 0 and rows[-1] == 999
    assert torch.equal(rows, rows.unique())  # sorted, no repeats
    # the float64 reference (scores, weights and a copy: 24 bytes per key) of the sampled rows
    # stays within REFERENCE_BYTES: here 99 rows of 8 heads x 14000 keys
    long_keys = AttentionSpec(heads=8, seq=4096, kv_seq=14_000)
    per_row = 8 * 14_000 * 24
    assert sample_rows(long_keys, max_rows=256).numel() == REFERENCE_BYTES // per_row == 99
    # however long the keys, at least one row is checked
    huge = AttentionSpec(batch=8, heads=32, seq=4096, kv_seq=2**20, head_dim=64)
    assert sample_rows(huge, max_rows=256).tolist() == [0]


# -- refusals ---------------------------------------------------------------------------------
def test_an_absurd_spec_does_not_fit_and_says_by_how_much():
    spec = AttentionSpec(seq=10_000_000)
    with pytest.raises(DoesNotFit, match=r"^does not fit: dense at seq 10000000 needs ~[\d,.]+ TiB, "
                                         r"[\d.]+ [MGT]iB free on cpu; lower seq"):
        check_fits(spec, "dense", "cpu")
    with pytest.raises(DoesNotFit, match=r"does not fit: .* TiB"):
        profile(spec, "dense", device="cpu")  # refused before any allocation


def test_an_unsupported_spec_raises_with_the_reason_in_words():
    with pytest.raises(ValueError, match="linformer: pools keys across positions, so it cannot be causal"):
        profile(TINY.with_(causal=True), "linformer", device="cpu")
    with pytest.raises(ValueError, match="efficient: needs a CUDA GPU"):
        profile(TINY.with_(backend="efficient"), "sdpa", device="cpu")


def test_a_cpu_allocation_failure_is_does_not_fit(monkeypatch):
    def no_memory(*a, **kw):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 123 bytes.")
    monkeypatch.setattr(measure, "random_qkv", no_memory)
    with pytest.raises(DoesNotFit, match="does not fit: out of memory on cpu"):
        profile(TINY, "dense", device="cpu")


# -- energy -----------------------------------------------------------------------------------
class CountingEnergyReader:
    """A GPU whose energy counter grows 7 mJ with every call of the profiled function."""

    def __init__(self):
        self.calls = 0

    def call(self):
        self.calls += 1

    def read(self):
        return SimpleNamespace(energy_mj=1_000_000 + 7 * self.calls)


def test_energy_per_call_from_a_counter_that_grows_with_calls():
    gpu = CountingEnergyReader()
    syncs = []
    joules = energy_per_call(gpu.call, gpu, sync=lambda: syncs.append(1), min_s=0.01)
    assert joules == pytest.approx(0.007)
    assert gpu.calls >= 1 and syncs  # synchronised at least once before reading the counter


def test_energy_per_call_stops_at_max_calls():
    gpu = CountingEnergyReader()
    assert energy_per_call(gpu.call, gpu, sync=lambda: None, min_s=60.0, max_calls=20) == pytest.approx(0.007)
    assert gpu.calls == 20


def test_no_energy_without_a_counter_or_when_it_goes_backwards():
    no_counter = SimpleNamespace(read=lambda: SimpleNamespace(energy_mj=None))
    assert energy_per_call(lambda: None, no_counter, sync=lambda: None, min_s=0.001) is None
    readings = iter([5000, 10])  # a driver reload reset the counter
    reset = SimpleNamespace(read=lambda: SimpleNamespace(energy_mj=next(readings)))
    assert energy_per_call(lambda: None, reset, sync=lambda: None, min_s=0.001) is None


# -- the whole profile ------------------------------------------------------------------------
def test_a_profile_carries_every_number_of_the_contract():
    prof = profile(TINY, "dense", device="cpu", budget_s=0.01)
    d = prof.to_dict()
    for key in ("variant", "spec", "device", "backend", "latency_ms", "p10_ms", "p90_ms", "repeats",
                "flops", "flops_counted", "flops_note", "achieved_tflops", "peak_bytes",
                "kernel_error", "approx_error", "environment", "cost"):
        assert key in d
    assert d["variant"] == "dense" and d["spec"]["device"] == "cpu" and d["backend"] == "eager (torch)"
    assert prof.p10_ms <= prof.latency_ms <= prof.p90_ms
    # at least the float32 scores and weights of one call: 2 * B*H*S*KV * 4 bytes
    assert prof.peak_bytes >= 2 * 2 * 64 * 64 * 4
    assert "memory events" in prof.memory_method and prof.reserved_bytes is None
    assert 0 < prof.timing_s <= prof.wall_s
    assert prof.overhead_s == pytest.approx(prof.wall_s - prof.timing_s)
    assert prof.energy_j is None  # no GPU energy counter on the CPU
    assert prof.roofline_pct is None  # not calibrated (ATTN_HOME is empty in the tests)


def test_sdpa_auto_profile_says_what_each_backend_did():
    auto = profile(TINY.with_(causal=True), "sdpa", device="cpu", budget_s=0.01)
    assert auto.backend in ("flash", "math")
    assert auto.backend_reasons["cudnn"] == "cudnn: needs a CUDA GPU"
    assert auto.backend_reasons[auto.backend].endswith(" ms")
    named = profile(TINY.with_(causal=True, backend="math"), "sdpa", device="cpu", budget_s=0.01)
    assert named.backend == "math" and named.backend_reasons == {}


def test_a_calibrated_device_gives_the_share_of_the_roofline(monkeypatch):
    cal = calibrate.Calibration(device="cpu", torch=torch.__version__,
                                matmul_tflops={"float32": 1.0}, bandwidth_gbps=10.0)
    monkeypatch.setattr(calibrate, "cached", lambda device: cal)
    prof = profile(TINY, "dense", device="cpu", budget_s=0.01)
    attainable = min(1.0, prof.cost["arithmetic_intensity"] * 10.0 / 1e3)
    assert prof.attainable_tflops == pytest.approx(attainable)
    assert prof.roofline_pct == pytest.approx(100 * prof.achieved_tflops / attainable)


def test_profile_can_skip_the_error_check():
    prof = profile(TINY, "linear", device="cpu", budget_s=0.01, check_errors=False)
    assert prof.kernel_error is None and prof.approx_error is None and prof.error_rows == 0


def test_sdpa_bottom_right_causal_with_more_keys_profiles_under_the_flop_counter():
    # regression: the profiler's counted call runs under FlopCounterMode, where torch cannot
    # create its CausalBias tensor subclass; a valid GQA spec with more keys than queries crashed
    spec = AttentionSpec(seq=2, kv_seq=4, heads=8, kv_heads=1, head_dim=64, causal=True)
    prof = measure.profile(spec, "sdpa", device="cpu", budget_s=0.0)
    assert prof.kernel_error < 1e-5
    assert prof.flops == 4 * 8 * 64 * (3 + 4)


def test_sdpa_lower_right_bias_falls_back_to_booleans_under_a_dispatch_mode():
    from torch.utils.flop_counter import FlopCounterMode

    variants.sdpa._causal_bias.cache_clear()
    spec = AttentionSpec(seq=3, kv_seq=7, heads=2, head_dim=8, causal=True)
    q, k, v = (torch.randn(1, 2, n, 8) for n in (3, 7, 7))
    with FlopCounterMode(display=False):
        out = variants.sdpa.run(q, k, v, spec)
    assert torch.allclose(out, variants.dense.run(q, k, v, spec), atol=1e-5)
