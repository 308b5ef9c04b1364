"""The economics of attention on hand-computed cases: dollars and joules per million tokens, the
longest context in a budget, the Pareto frontier, and the KV-cache savings of GQA and MQA."""
from __future__ import annotations

import math

import pytest

from attn import economics
from attn.economics import Measurement
from attn.runs import Run
from attn.spec import AttentionSpec

SPEC = AttentionSpec(seq=1024, heads=8, head_dim=64, causal=True, device="cpu")


def point(variant: str = "sdpa", seq: int = 1024, latency_ms: float | None = 2.0, energy_j=None,
          peak_bytes: int | None = 1000, footprint_bytes: int | None = 2000, error: float | None = 1e-7,
          status: str = "ok", device_kind: str = "cuda", run_id: int = 1) -> Measurement:
    spec = SPEC.with_(seq=seq, kv_seq=seq).to_dict()
    return Measurement(variant, seq, 1, status, latency_ms, energy_j, peak_bytes, footprint_bytes, error,
                       "H100", device_kind, economics.shape_of(spec), spec, run_id)


# -- $ and J per million tokens ----------------------------------------------------------------
def test_dollars_per_million_tokens_by_hand():
    # $3.60/h is $0.001/s; 2 ms per call of 4 x 1000 tokens: 2e-6 $ per 4000 tokens = $0.0005/Mtok
    assert economics.tokens_per_call(4, 1000) == 4000
    assert economics.usd_per_mtok(2.0, 4000, 3.60) == pytest.approx(0.0005)
    # twice the latency, twice the price; twice the tokens, half the price
    assert economics.usd_per_mtok(4.0, 4000, 3.60) == pytest.approx(0.001)
    assert economics.usd_per_mtok(2.0, 8000, 3.60) == pytest.approx(0.00025)
    with pytest.raises(ValueError, match="tokens per call must be positive"):
        economics.usd_per_mtok(1.0, 0, 2.5)


def test_joules_per_million_tokens_by_hand_and_missing_energy():
    assert economics.joules_per_mtok(0.5, 1000) == pytest.approx(500.0)  # 0.5 mJ per token
    assert economics.joules_per_mtok(None, 1000) is None


def test_token_costs_pay_the_price_of_the_device_they_ran_on():
    gpu = point(latency_ms=1.0, energy_j=0.2, device_kind="cuda")
    cpu = point(variant="linear", latency_ms=10.0, device_kind="cpu")
    oom = point(variant="dense", status="oom", latency_ms=None)
    rows = economics.token_costs([gpu, cpu, oom], gpu_price_per_hour=3.6, cpu_price_per_hour=0.36)
    assert [r.variant for r in rows] == ["sdpa", "linear"]  # an out-of-memory point has no price
    g, c = rows
    assert (g.tokens, g.price_per_hour) == (1024, 3.6)
    assert g.usd_per_mtok == pytest.approx(0.001 * 1e-3 / 1024 * 1e6)
    assert g.joules_per_mtok == pytest.approx(0.2 / 1024 * 1e6) and g.energy_note == ""
    assert c.usd_per_mtok == pytest.approx(0.0001 * 10e-3 / 1024 * 1e6)
    assert c.joules_per_mtok is None and "CPU" in c.energy_note
    no_counter = economics.token_costs([point(energy_j=None)], 1.0, 1.0)[0]
    assert no_counter.joules_per_mtok is None and "counter" in no_counter.energy_note


# -- measurements out of saved runs ------------------------------------------------------------------
def run(run_id: int, kind: str, results: dict, variant: str, device_kind: str = "cpu") -> Run:
    env = {"device": "Test CPU" if device_kind == "cpu" else "H100", "device_kind": device_kind}
    return Run(run_id, kind, variant, SPEC.to_dict(), results, env, "2026-01-01T00:00:00")


def test_measurements_come_from_profiles_and_sweep_points_and_the_newest_wins():
    prof = run(1, "profile", {"variant": "sdpa", "spec": SPEC.to_dict(), "latency_ms": 3.0,
                              "peak_bytes": 100, "approx_error": 1e-7, "energy_j": None}, "sdpa")
    pts = [{"variant": "sdpa", "x": s, "status": "ok", "latency_ms": s / 512, "peak_bytes": 10 * s,
            "footprint_bytes": 20 * s, "approx_error": 1e-7, "spec": SPEC.with_(seq=s, kv_seq=s).to_dict()}
           for s in (512, 1024)]
    pts.append({"variant": "sdpa", "x": 2048, "status": "oom", "spec": SPEC.with_(seq=2048, kv_seq=2048).to_dict()})
    swept = run(2, "sweep", {"points": pts}, "sdpa")
    other = run(3, "model", {"layers": 6}, "bert")
    found = economics.measurements([prof, swept, other])
    assert len(found) == 4
    assert found[0].footprint_bytes == 100 + 3 * 8 * 1024 * 64 * 4  # inputs q, k, v in float32 + peak
    newest = economics.newest_per_point(found)
    assert [(m.seq, m.run_id, m.status) for m in newest] == [(512, 2, "ok"), (1024, 2, "ok"), (2048, 2, "oom")]
    assert newest[1].latency_ms == 2.0
    assert economics.shape_of(SPEC.to_dict()) == "B1 H8 D64 float32 causal"
    assert economics.shape_of(SPEC.with_(kv_heads=2).to_dict()) == "B1 H8/2 D64 float32 causal"


# -- the longest context ------------------------------------------------------------------
def test_longest_context_measured_when_the_budget_falls_inside_the_lengths():
    pts = [point(seq=s, footprint_bytes=f) for s, f in ((256, 100), (512, 400), (1024, 1600))]
    fit = economics.longest_context(pts, budget_bytes=1000)
    assert (fit.max_seq, fit.projected) == (512, False)
    assert "1,024 does not" in fit.note
    # an out-of-memory point does not fit either
    oom = pts[:2] + [point(seq=1024, status="oom", footprint_bytes=None)]
    assert economics.longest_context(oom, budget_bytes=10**9).max_seq == 512
    nothing = economics.longest_context(pts, budget_bytes=50)
    assert (nothing.max_seq, nothing.projected) == (None, False)


def test_longest_context_projected_past_the_measured_lengths():
    # a quadratic peak: 4 bytes per (query, key) pair, measured up to 1024
    pts = [point(seq=s, peak_bytes=4 * s * s, footprint_bytes=4 * s * s + 3 * 8 * s * 64 * 4)
           for s in (256, 512, 1024)]
    budget = 2**30
    fit = economics.longest_context(pts, budget)
    assert fit.projected and "projected" in fit.note
    # by hand: 4 s^2 (the peak, output included) + 6144 s (q, k, v) = 2^30 at
    # s = -768 + sqrt(768^2 + 2^28)
    exact = -768 + math.sqrt(768**2 + 2**28)
    assert abs(fit.max_seq - exact) <= 1
    one = economics.longest_context(pts[:1], budget)
    assert one.max_seq is None and "two lengths" in one.note


def test_a_saved_bisected_wall_answers_for_about_its_own_budget():
    pts = [point(seq=s, footprint_bytes=s) for s in (256, 512)]
    wall = {"variant": "sdpa", "x": 70_000, "budget_bytes": 10**9, "projected": False, "note": "bisected"}
    assert economics.longest_context(pts, 10**9, wall).max_seq == 70_000
    assert not economics.longest_context(pts, 10**9, wall).projected
    assert economics.longest_context(pts, 2 * 10**9, wall).projected  # another budget: projected


# -- the frontier ---------------------------------------------------------------------------------
def test_frontier_on_a_known_set():
    marked = {p.label: p for p in economics.frontier([
        ("exact", 1e-7, 10.0),     # most accurate: on the frontier
        ("fast", 0.3, 1.0),        # cheapest: on the frontier
        ("middle", 0.1, 3.0),      # between them: on the frontier
        ("worse", 0.2, 5.0),       # middle is better on both
        ("tie_cost", 0.3, 2.0),    # same error as fast, dearer: dominated
        ("duplicate", 0.1, 3.0),   # equal to middle: neither dominates the other
    ])}
    assert {k for k, p in marked.items() if p.dominated} == {"worse", "tie_cost"}
    assert marked["worse"].dominated_by in ("middle", "duplicate")
    assert marked["tie_cost"].dominated_by == "fast"
    assert marked["duplicate"].dominated is False and marked["middle"].dominated is False


def test_frontier_at_a_length_uses_one_point_per_variant():
    pts = [point("sdpa", latency_ms=1.0, error=1e-7, peak_bytes=4000), point("topk", latency_ms=2.0, error=0.1, peak_bytes=500),
           point("linear", latency_ms=0.5, error=0.3, peak_bytes=800), point("performer", latency_ms=3.0, error=0.4, peak_bytes=900),
           point("sdpa", seq=2048, latency_ms=9.0)]
    by_latency = {p.label: p.dominated for p in economics.frontier_at(pts, 1024, "latency_ms")}
    assert by_latency == {"linear": False, "performer": True, "sdpa": False, "topk": True}
    by_memory = {p.label: p.dominated for p in economics.frontier_at(pts, 1024, "peak_bytes")}
    assert by_memory == {"linear": True, "performer": True, "sdpa": False, "topk": False}
    with pytest.raises(ValueError, match="cost must be"):
        economics.frontier_at(pts, 1024, "flops")


# -- GQA / MQA ------------------------------------------------------------------------------------
def test_kv_sharing_bytes_and_dollars_by_hand():
    spec = AttentionSpec(seq=1, heads=8, head_dim=128, dtype="float16")
    rows = economics.kv_sharing(spec, batch=4, context=1000, layers=10, bandwidth_gbps=1000.0,
                                price_per_hour=3.6, memory_bytes=100 * 2**20)
    assert [r.kv_heads for r in rows] == [8, 4, 2, 1]
    mha, gqa4, gqa2, mqa = rows
    assert mha.name.startswith("MHA") and mqa.name.startswith("MQA") and gqa2.name.startswith("GQA")
    # MHA: 2 (k and v) * 8 heads * 128 dims * 2 bytes * 10 layers = 40,960 bytes per token
    assert mha.bytes_per_token == 40_960 and mqa.bytes_per_token == 5_120
    assert mha.cache_bytes == 4 * 1000 * 40_960
    # a step reads the whole cache: 163.84 MB at 1000 GB/s = 163.84 us
    assert mha.read_s_per_step == pytest.approx(163.84e-6)
    # per token: its own 1000-token cache, 40.96 MB, 40.96 us at $0.001/s = $4.096e-8; per Mtok $0.04096
    assert mha.usd_per_mtok == pytest.approx(0.04096)
    assert mqa.usd_per_mtok == pytest.approx(0.04096 / 8)
    assert mqa.saved_bytes_per_token == 40_960 - 5_120
    assert mqa.saved_usd_per_mtok == pytest.approx(0.04096 * 7 / 8)
    assert mha.saved_bytes_per_token == 0 and mha.saved_usd_per_mtok == 0
    assert (mha.fits, gqa4.fits, mqa.fits) == (False, True, True)  # 156 MiB, 78 MiB, 20 MiB vs 100 MiB


def test_kv_sharing_says_what_is_wrong():
    spec = AttentionSpec(seq=1, heads=8, head_dim=64)
    with pytest.raises(ValueError, match="do not divide heads"):
        economics.kv_sharing(spec, 1, 1, 1, 100.0, 1.0, kv_heads_options=[3])
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        economics.kv_sharing(spec, 1, 1, 1, 0.0, 1.0)
    assert economics.kv_sharing(spec, 1, 1, 1, 100.0, 1.0)[0].fits is None
