"""Sweeps: fitted exponents, crossovers, the memory wall, and how a sweep runs (streaming,
out-of-memory for one variant only, cancel). Most tests give run_sweep a fake profiler that
returns the cost model's numbers, so they are fast and exact; one small sweep is real."""
import json
import math
from types import SimpleNamespace

import pytest

from attn import measure, sweep
from attn.cost import attention_cost, io_bytes
from attn.regimes import decode_spec
from attn.spec import AttentionSpec
from attn.sweep import (Fit, Point, analyse, analytic_curve, crossovers, fit_power_law,
                        largest_that_fits, projected_wall, run_sweep, spec_at)

BASE = AttentionSpec(batch=1, seq=64, heads=2, head_dim=16)
XS = [64, 128, 256, 512, 1024]


def analytic_profile(spec, variant, device=None, budget_s=None):
    """What measure.profile returns, with the cost model's numbers; latency follows the FLOPs."""
    cost = attention_cost(spec, variant)
    return SimpleNamespace(latency_ms=cost.flops / 1e6, p10_ms=cost.flops / 1.1e6,
                           p90_ms=cost.flops / 0.9e6, peak_bytes=cost.extra_bytes + io_bytes(spec)[1],
                           flops=cost.flops, achieved_tflops=1e-3, kernel_error=0.0,
                           approx_error=0.0, backend="fake", energy_j=None)


class Recorder:
    """A fake profiler that logs every call and can refuse some."""

    def __init__(self, oom_above: dict[str, int] | None = None, fail_at: dict[str, int] | None = None):
        self.oom_above = oom_above or {}
        self.fail_at = fail_at or {}
        self.log: list[tuple] = []

    def __call__(self, spec, variant, device=None, budget_s=None):
        self.log.append(("profile", variant, spec.seq))
        if spec.seq > self.oom_above.get(variant, math.inf):
            raise measure.DoesNotFit(f"does not fit: {variant} at seq {spec.seq} needs ~9.00 GiB, "
                                     "1.00 GiB free on cpu")
        if spec.seq == self.fail_at.get(variant):
            raise RuntimeError("kernel failed\nsecond line of the trace")
        return analytic_profile(spec, variant)


# -- fitted exponents ---------------------------------------------------------------------------
def test_dense_flops_grow_as_the_square_and_linear_flops_linearly():
    result = run_sweep(BASE, ["dense", "linear"], XS, profile_fn=analytic_profile)
    assert result.fits["dense"]["flops"].exponent == pytest.approx(2.0, abs=0.05)
    assert result.fits["linear"]["flops"].exponent == pytest.approx(1.0, abs=0.05)
    assert result.fits["dense"]["peak_bytes"].exponent == pytest.approx(2.0, abs=0.05)
    assert result.fits["dense"]["flops"].points == len(XS)


def test_a_batch_sweep_grows_linearly():
    result = run_sweep(BASE, ["dense"], [1, 2, 4, 8], axis="batch", profile_fn=analytic_profile)
    assert result.fits["dense"]["flops"].exponent == pytest.approx(1.0, abs=1e-9)
    assert [p.spec["batch"] for p in result.points] == [1, 2, 4, 8]


def test_fit_power_law_recovers_exponent_and_coefficient():
    fit = fit_power_law([1, 2, 4, 8], [3 * x**1.5 for x in (1, 2, 4, 8)])
    assert fit.exponent == pytest.approx(1.5) and fit.coefficient == pytest.approx(3.0)
    assert fit.at(16) == pytest.approx(3 * 16**1.5)
    assert fit_power_law([1], [1]) is None  # one point fixes no slope
    assert fit_power_law([4, 4], [1, 2]) is None  # nor do two at the same x
    # zeros and missing values are left out, not logged
    assert fit_power_law([1, 2, 3, 4], [0, 4, None, 16]).exponent == pytest.approx(2.0)


# -- crossovers -----------------------------------------------------------------------------------
def test_square_and_linear_curves_cross_at_a_sample():
    xs = [10, 50, 100, 200, 1000]
    found = crossovers(xs, [x * x for x in xs], [100 * x for x in xs], "latency_ms", "dense", "linear")
    assert len(found) == 1
    assert found[0].x == pytest.approx(100)
    assert found[0].cheaper_after == "linear" and found[0].metric == "latency_ms"


def test_square_and_linear_curves_cross_between_samples():
    xs = [10, 30, 300, 1000]
    found = crossovers(xs, [x * x for x in xs], [100 * x for x in xs], "peak_bytes", "a", "b")
    # both are straight lines in log-log, so log-log interpolation finds the crossing exactly
    assert [round(c.x, 6) for c in found] == [100.0]
    assert found[0].cheaper_after == "b"
    # the other way round: a is the cheaper one beyond the crossing
    found = crossovers(xs, [100 * x for x in xs], [x * x for x in xs], "peak_bytes", "a", "b")
    assert found[0].cheaper_after == "a"


def test_curves_that_touch_without_crossing_or_never_meet():
    assert crossovers([1, 2, 3], [1, 5, 1], [2, 5, 2], "m", "a", "b") == []  # touch at 2
    assert crossovers([1, 2, 3], [1, 2, 3], [2, 4, 6], "m", "a", "b") == []  # parallel
    assert crossovers([50, 100], [2500, 10000], [5000, 10000], "m", "a", "b") == []  # meet at the end


def test_analyse_finds_the_crossover_between_measured_variants():
    def pts(name, f):
        return [Point(name, x, "ok", latency_ms=f(x), peak_bytes=f(x), flops=1) for x in (10, 100, 1000)]
    fits, found = analyse(pts("dense", lambda x: x * x) + pts("linear", lambda x: 100 * x),
                          ["dense", "linear"])
    assert fits["dense"]["latency_ms"].exponent == pytest.approx(2.0)
    assert {c.metric for c in found} == {"latency_ms", "peak_bytes"}
    assert all(c.x == pytest.approx(100) and c.cheaper_after == "linear" for c in found)


# -- running a sweep ---------------------------------------------------------------------------
def test_a_simulated_out_of_memory_stops_that_variant_only():
    fake = Recorder(oom_above={"dense": 256})
    result = run_sweep(BASE, ["dense", "linear"], XS, profile_fn=fake)
    dense = [(p.x, p.status) for p in result.points if p.variant == "dense"]
    assert dense == [(64, "ok"), (128, "ok"), (256, "ok"), (512, "oom")]  # nothing tried past it
    assert [p.status for p in result.points if p.variant == "linear"] == ["ok"] * len(XS)
    oom = result.points[3]
    assert oom.message.startswith("does not fit: dense at seq 512") and oom.latency_ms is None
    assert ("profile", "dense", 1024) not in fake.log
    assert result.fits["dense"]["flops"].points == 3  # fitted on what ran


def test_a_memory_budget_marks_points_out_of_memory_before_allocating_them():
    budget = attention_cost(spec_at(BASE, "seq", 256), "dense").peak_bytes
    fake = Recorder()
    result = run_sweep(BASE, ["dense"], XS, profile_fn=fake, memory_budget_bytes=budget)
    assert [p.status for p in result.points] == ["ok", "ok", "ok", "oom"]
    assert "over the sweep's budget" in result.points[-1].message
    assert [seq for _, _, seq in fake.log] == [64, 128, 256]  # 512 was never run


def test_a_failing_call_marks_its_point_and_the_sweep_goes_on():
    result = run_sweep(BASE, ["dense"], [64, 128, 256], profile_fn=Recorder(fail_at={"dense": 128}))
    assert [(p.x, p.status) for p in result.points] == [(64, "ok"), (128, "error"), (256, "ok")]
    assert result.points[1].message == "kernel failed"


def test_unsupported_points_are_marked_without_running():
    fake = Recorder()
    result = run_sweep(BASE.with_(causal=True), ["linformer"], [64, 128], profile_fn=fake)
    assert [p.status for p in result.points] == ["unsupported"] * 2
    assert "cannot be causal" in result.points[0].message and fake.log == []


def test_points_stream_to_on_point_as_each_is_measured():
    events = []
    fake = Recorder()

    def profile_fn(spec, variant, **kw):
        events.append(("profile", variant, spec.seq))
        return fake(spec, variant, **kw)

    run_sweep(BASE, ["dense", "linear"], [256, 64, 128, 64], profile_fn=profile_fn,
              on_point=lambda p: events.append(("point", p.variant, p.x)))
    order = [(v, x) for v in ("dense", "linear") for x in (64, 128, 256)]  # ascending, no repeats
    expected = [e for v, x in order for e in (("profile", v, x), ("point", v, x))]
    assert events == expected


def test_cancel_stops_the_sweep_between_points():
    seen = []
    fake = Recorder()
    result = run_sweep(BASE, ["dense", "linear"], XS, profile_fn=fake, on_point=seen.append,
                       cancelled=lambda: len(seen) >= 3)
    assert len(result.points) == len(seen) == 3 and len(fake.log) == 3
    assert all(p.variant == "dense" for p in result.points)


def test_unknown_variants_and_bad_sizes_fail_before_any_work():
    fake = Recorder()
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        run_sweep(BASE, ["dense", "nope"], XS, profile_fn=fake)
    with pytest.raises(ValueError, match="seq must be at least 1"):
        run_sweep(BASE, ["dense"], [0, 64], profile_fn=fake)
    with pytest.raises(ValueError, match="unknown sweep axis"):
        run_sweep(BASE, ["dense"], [64], axis="depth", profile_fn=fake)
    assert fake.log == []


def test_spec_at_each_axis():
    assert spec_at(BASE, "seq", 100).kv_seq == 100  # keys follow queries when they were equal
    cross = BASE.with_(kv_seq=77)
    assert spec_at(cross, "seq", 100).kv_seq == 77  # a fixed key length stays fixed
    gqa = BASE.with_(heads=8, kv_heads=2)
    assert (spec_at(gqa, "heads", 16).kv_heads, spec_at(gqa, "heads", 16).d_model) == (4, 16 * 16)
    assert spec_at(BASE, "head_dim", 32).head_dim == 32


def test_a_real_small_sweep():
    """The plumbing with the real profiler: a few tiny points, fits, a projected wall, JSON."""
    result = run_sweep(BASE, ["sdpa", "linear"], [32, 64, 128], device="cpu", budget_s=0.005)
    assert [p.status for p in result.points] == ["ok"] * 6
    for p in result.points:
        assert p.latency_ms > 0 and p.peak_bytes > 0 and p.flops > 0 and p.kernel_error < 1e-4
        assert p.footprint_bytes == io_bytes(AttentionSpec.from_dict(p.spec))[0] + p.peak_bytes
    assert result.fits["sdpa"]["flops"].exponent == pytest.approx(2.0)
    walls = {w.variant: w for w in result.walls}
    assert walls["sdpa"].projected and walls["sdpa"].x > 128 and "projected" in walls["sdpa"].note
    text = json.dumps(result.to_dict())
    assert '"crossovers"' in text and '"walls"' in text
    assert "memory wall sdpa" in sweep.human_summary(json.loads(text))


# -- the memory wall ----------------------------------------------------------------------------
def test_projected_wall_on_a_known_curve():
    # footprint = inputs 100 x + call peak x^2: the largest x with x^2 + 100 x <= 1e6 is 951
    wall = projected_wall(lambda x: 100 * x, Fit(2.0, 1.0, 5), 1_000_000, "dense", largest_seen=10)
    assert wall.x == 951 and wall.projected and wall.budget_bytes == 1_000_000
    assert 951**2 + 100 * 951 <= 1_000_000 < 952**2 + 100 * 952
    assert "x^2.00" in wall.note


def test_projected_wall_holds_a_flat_peak_at_its_largest_measured_value():
    # a call peak that shrinks with x is held at its value at the largest measured x (100)
    wall = projected_wall(lambda x: 10 * x, Fit(-1.0, 1e6, 3), 1_000_000, "linear", largest_seen=100)
    assert wall.x == (1_000_000 - 10_000) // 10


def test_projected_wall_when_nothing_fits():
    wall = projected_wall(lambda x: 10**9, None, 1000, "dense", largest_seen=1)
    assert wall.x is None and "not even the smallest" in wall.note


def test_a_variant_with_too_few_points_gets_no_projection():
    result = run_sweep(BASE, ["dense"], [64], profile_fn=analytic_profile)
    assert result.walls[0].x is None and "too few" in result.walls[0].note


def test_the_cpu_wall_comes_from_the_sweeps_budget():
    def square_peak(spec, variant, **kw):  # a call whose peak is exactly 8 x^2 bytes
        return SimpleNamespace(**{**vars(analytic_profile(spec, variant)), "peak_bytes": 8 * spec.seq**2})

    budget = 2**30
    result = run_sweep(BASE, ["dense"], XS, profile_fn=square_peak, memory_budget_bytes=budget)
    wall = result.walls[0]
    assert wall.projected and wall.budget_bytes == budget

    def need(s):  # the inputs, known exactly, plus the call's peak
        return io_bytes(spec_at(BASE, "seq", s))[0] + 8 * s**2
    assert need(wall.x) <= budget < need(wall.x + 1)


def test_largest_that_fits_bisects_between_a_fit_and_a_failure():
    tried = []

    def fits(x):
        tried.append(x)
        return x <= 1000
    x, tries, bounded = largest_that_fits(fits, lo=100, hi=5000)
    assert bounded and 1000 * (1 - 1 / 64) <= x <= 1000
    assert tries == len(tried) <= 16 and max(tried) < 5000  # the known failure is not tried again


def test_largest_that_fits_grows_an_open_bracket_first():
    tried = []

    def fits(x):
        tried.append(x)
        return x <= 1000
    x, _, bounded = largest_that_fits(fits, lo=100, hi=200, hi_fails=False)
    assert tried[:4] == [200, 400, 800, 1600]  # doubled until a try failed
    assert bounded and 1000 * (1 - 1 / 64) <= x <= 1000


def test_largest_that_fits_when_nothing_or_everything_fits():
    assert largest_that_fits(lambda x: False, lo=0, hi=64) == (None, 6, True)
    x, tries, bounded = largest_that_fits(lambda x: True, lo=10, hi=20, hi_fails=False, max_tries=3)
    assert (x, tries, bounded) == (80, 3, False)  # 20, 40, 80 all fitted: a lower bound


# -- the analytic curve -------------------------------------------------------------------------
def test_analytic_curve_follows_the_cost_model_without_running():
    curve = analytic_curve(BASE, "dense", [64, 128])
    assert [c["x"] for c in curve] == [64, 128]
    assert [c["pairs"] for c in curve] == [64 * 64, 128 * 128]
    assert [c["flops"] for c in curve] == [4 * 2 * 16 * s * s for s in (64, 128)]
    assert curve[1]["peak_bytes"] == attention_cost(spec_at(BASE, "seq", 128), "dense").peak_bytes
    causal = analytic_curve(BASE.with_(causal=True), "dense", [64])
    assert causal[0]["pairs"] == 64 * 65 // 2


def test_analytic_curve_in_a_regime_gives_what_grows_there():
    train = analytic_curve(BASE, "dense", [64, 128], mode="train")
    assert [c["saved_bytes"] for c in train] == [attention_cost(spec_at(BASE, "seq", s), "dense",
                                                                "train").saved_bytes for s in (64, 128)]
    step = decode_spec(BASE, 256)
    decode = analytic_curve(step, "sdpa", [256, 512], axis="context", mode="decode")
    assert decode[1]["bytes_read"] == attention_cost(step.with_(kv_seq=512), "sdpa", "decode").bytes_read
    assert decode[0]["saved_bytes"] is None and train[0]["bytes_read"] is None


def test_a_budget_below_a_measured_need_puts_the_wall_below_that_point():
    # the largest measured point (1000) needed 1e6 bytes; with half of that, the wall is lower
    wall = projected_wall(lambda x: 0, Fit(2.0, 1.0, 3), 500_000, "dense", largest_seen=1000)
    assert wall.x == 707  # 707^2 <= 5e5 < 708^2
