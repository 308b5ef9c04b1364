"""Decode and training prices from saved runs, on hand-made numbers worked out by hand."""
from __future__ import annotations

import pytest

from attn import economics, regime_costs
from attn.runs import Run
from tests.regime_runs import CPU, GPU, SPEC, decode_profile, decode_spec, old_profile, train_profile


def run(run_id: int, results: dict, kind: str = "profile", env: dict = CPU, variant: str = "sdpa") -> Run:
    return Run(run_id, kind, variant, results.get("spec") or SPEC.to_dict(), results, env, "2026-01-01T00:00:00")


def test_a_decode_step_priced_by_hand_beside_its_floor():
    # batch 2, one new token each: a step makes 2 tokens. $3.60/h is $0.001/s; a 0.05 ms step is
    # 5e-8 $ for 2 tokens, $0.025 per million; the floor (0.01 ms) a fifth of it
    gpu = run(1, decode_profile(step_ms=0.05, floor_ms=0.01, energy_j=0.004), env=GPU)
    (cost,) = regime_costs.decode_costs([gpu], gpu_price_per_hour=3.6, cpu_price_per_hour=0.36)
    assert (cost.context, cost.new_tokens, cost.batch, cost.tokens) == (256, 1, 2, 2)
    assert cost.price_per_hour == 3.6 and cost.per_token_ms == pytest.approx(0.05)
    assert cost.usd_per_mtok == pytest.approx(0.025)
    assert cost.floor_usd_per_mtok == pytest.approx(0.005) and cost.floor_note == ""
    assert cost.joules_per_mtok == pytest.approx(0.004 / 2 * 1e6) and cost.energy_note == ""
    assert cost.shape == "B2 H2 D16 float32 causal" and cost.run_id == 1


def test_several_new_tokens_per_step_share_the_step():
    # 4 new tokens for each of 2 sequences: 8 tokens per 0.4 ms step; one sequence waits 0.1 ms a token
    (cost,) = regime_costs.decode_costs([run(1, decode_profile(step_ms=0.4, new_tokens=4))], 3.6, 3.6)
    assert cost.tokens == 8 and cost.per_token_ms == pytest.approx(0.1)
    assert cost.usd_per_mtok == pytest.approx(0.001 * 0.4e-3 / 8 * 1e6)


def test_decode_on_a_cpu_has_no_joules_and_says_why_and_a_missing_floor_is_not_made_up():
    cpu = run(1, {**decode_profile(), "floor_ms": None})
    gpu = run(2, decode_profile(variant="linear"), env=GPU)  # a GPU decode run without a reading
    by_variant = {c.variant: c for c in regime_costs.decode_costs([cpu, gpu], 2.0, 0.2)}
    assert by_variant["sdpa"].price_per_hour == 0.2 and by_variant["linear"].price_per_hour == 2.0
    assert by_variant["sdpa"].joules_per_mtok is None and "CPU" in by_variant["sdpa"].energy_note
    assert by_variant["sdpa"].floor_usd_per_mtok is None and "calibrated" in by_variant["sdpa"].floor_note
    assert by_variant["linear"].joules_per_mtok is None and "do not" in by_variant["linear"].energy_note


def test_a_training_step_priced_per_training_token_by_hand():
    # forward 1 ms + backward 2 ms over batch 2 x seq 32 = 64 tokens at $3.60/h:
    # 0.001 $/s * 3e-3 s / 64 tokens * 1e6 = $0.046875 per million training tokens
    (cost,) = regime_costs.train_costs([run(1, train_profile(forward_ms=1.0, backward_ms=2.0))], 0.0, 3.6)
    assert (cost.seq, cost.batch, cost.tokens, cost.step_ms) == (32, 2, 64, 3.0)
    assert cost.usd_per_mtok == pytest.approx(0.046875)
    assert cost.joules_per_mtok is None and "CPU" in cost.energy_note
    (with_energy,) = regime_costs.train_costs([run(1, train_profile(energy_j=0.064), env=GPU)], 1.0, 1.0)
    assert with_energy.joules_per_mtok == pytest.approx(1000.0)  # 1 mJ per token


def test_each_regime_prices_only_its_own_runs_and_old_runs_are_forward():
    runs = [run(1, old_profile()), run(2, train_profile()), run(3, decode_profile())]
    assert [c.run_id for c in regime_costs.train_costs(runs, 1.0, 1.0)] == [2]
    assert [c.run_id for c in regime_costs.decode_costs(runs, 1.0, 1.0)] == [3]
    # the prefill prices see the old run (no mode: forward) and neither of the others
    assert [m.run_id for m in economics.measurements(runs)] == [1]


def test_decode_sweep_points_are_priced_and_the_newest_run_wins():
    base = decode_spec(64)
    points = [{"variant": "sdpa", "x": c, "status": "ok", "mode": "decode", "latency_ms": c / 1000,
               "per_token_ms": c / 1000, "floor_ms": c / 4000, "energy_j": None,
               "spec": base.with_(kv_seq=c).to_dict()} for c in (256, 512)]
    points.append({"variant": "sdpa", "x": 1024, "status": "oom", "mode": "decode",
                   "spec": base.with_(kv_seq=1024).to_dict()})
    sweep = run(2, {"mode": "decode", "axis": "context", "points": points}, kind="sweep")
    older = run(1, decode_profile(context=256, step_ms=9.0))
    costs = regime_costs.decode_costs([older, sweep], 3.6, 3.6)
    assert [(c.context, c.run_id) for c in costs] == [(256, 2), (512, 2)]  # no price for the oom point
    assert costs[1].usd_per_mtok == pytest.approx(0.001 * 0.512e-3 / 2 * 1e6)
    assert costs[1].floor_usd_per_mtok == pytest.approx(costs[1].usd_per_mtok / 4)


def test_a_train_run_without_forward_and_backward_apart_is_left_out():
    partial = {**train_profile(), "backward_ms": None}
    assert regime_costs.train_costs([run(1, partial)], 1.0, 1.0) == []
