"""`attn selftest`: it passes on this CPU, fails the right check with the figure when a backend
returns wrong numbers or a timer lies, refuses a CUDA device that is not here, and is saved as a
run that exports."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from attn import selftest, selftest_checks, timing, variants
from attn.cli import main
from attn.runs import RunStore
from attn.selftest_checks import FAILED, NOT_HERE, PASSED


@pytest.fixture(scope="module")
def quick_cpu(tmp_path_factory):
    """`attn selftest --device cpu --quick --json`, as a user runs it (its own run store)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTN_HOME", str(tmp_path_factory.mktemp("selftest-home")))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["selftest", "--device", "cpu", "--quick", "--json"])
    return {**json.loads(out.getvalue()), "exit_code": code}


def by_name(result: dict) -> dict[str, dict]:
    return {row["name"]: row for row in result["checks"]}


@pytest.mark.slow
def test_quick_selftest_passes_on_this_cpu(quick_cpu):
    rows = by_name(quick_cpu)
    failed = {n: r["figure"] for n, r in rows.items() if r["status"] == FAILED}
    # on a busy machine the timer row says it could not check (tested below), never failed
    assert quick_cpu["exit_code"] == 0
    assert not failed, failed
    assert quick_cpu["complete"] and quick_cpu["run_id"] >= 1
    for name in variants.names():
        assert rows[f"{name} forward against float64"]["status"] == PASSED
    assert rows["NVML energy over a known loop"] == {
        "name": "NVML energy over a known loop", "group": "gpu", "status": NOT_HERE, "figure": "",
        "reason": "needs a CUDA device"}
    assert rows["memory returns to its baseline after an out-of-memory"]["status"] == NOT_HERE
    # the CPU's fused SDPA is invisible to torch's FLOP counter: said, not compared
    sdpa_row = rows["sdpa FLOPs against torch's FLOP counter"]
    assert sdpa_row["status"] == NOT_HERE and "fused SDPA" in sdpa_row["reason"]
    assert rows["dense FLOPs against torch's FLOP counter"]["status"] == PASSED
    assert len(rows) == len(selftest.planned_checks("cpu", True))


def test_every_row_has_a_status_and_says_why_when_not_possible():
    for planned in selftest.planned_checks("cpu", quick=True):
        if planned.group in ("timing", "backend", "accuracy"):
            continue  # run in the slow test; the rest are quick
        row = selftest.run_one(planned)
        assert row.status in selftest.STATUSES
        assert row.status != NOT_HERE or row.reason


def test_a_variant_returning_wrong_numbers_fails_its_own_check_with_the_figure(monkeypatch):
    """A pretend backend: sdpa's forward adds 1e-2 to every output."""
    real = variants.get("sdpa")
    monkeypatch.setitem(variants.registry._REGISTRY, "sdpa", __import__("dataclasses").replace(
        real, run=lambda q, k, v, spec: real.run(q, k, v, spec) + 1e-2))
    wrong = selftest_checks.accuracy("sdpa", "forward", "cpu", quick=True)
    assert wrong.status == FAILED
    assert "kernel_error" in wrong.figure and "bound 1e-05" in wrong.figure
    assert float(wrong.figure.split()[2]) > 1e-3  # the figure itself, not only the verdict
    assert selftest_checks.accuracy("dense", "forward", "cpu", quick=True).status == PASSED


def test_gradients_that_are_off_fail_the_train_check(monkeypatch):
    """A pretend backend whose backward is scaled: the forward is right, the gradients are not."""
    import torch

    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * 1.01

    real = variants.get("dense")
    monkeypatch.setitem(variants.registry._REGISTRY, "dense", __import__("dataclasses").replace(
        real, run=lambda q, k, v, spec: real.run(Scaled.apply(q), k, v, spec)))
    assert selftest_checks.accuracy("dense", "forward", "cpu", quick=True).status == PASSED
    train = selftest_checks.accuracy("dense", "train", "cpu", quick=True)
    assert train.status == FAILED and "grad_error" in train.figure


def test_a_timer_reporting_twice_the_time_fails_the_timer_check(monkeypatch):
    real = timing.time_cpu

    def doubled(fn, budget_s, *args, **kwargs):
        t = real(fn, budget_s, *args, **kwargs)
        return timing.summarize([2 * x for x in t.times_ms], t.warmup, t.method, t.elapsed_s)

    monkeypatch.setattr(timing, "time_cpu", doubled)
    check = selftest_checks.timer_agreement("cpu", quick=True, rounds=3)
    assert check.status == FAILED
    mine, theirs = (float(check.figure.split(" ms")[0].split()[-1]),
                    float(check.figure.split(" vs ")[1].split(" ms")[0]))
    # the figure shows what the lying timer said: about twice the other (wide: a loaded machine)
    assert mine / theirs > 1.4


def _scripted_timers(monkeypatch, mine: list[float], theirs: float = 10.0) -> None:
    """attn's timer reads `mine` round after round; the independent one always `theirs` ms."""
    rounds = iter(mine)
    monkeypatch.setattr(timing, "time_cpu", lambda fn, budget_s, *a, **k: timing.summarize(
        [next(rounds)], 0, "scripted", 0.0))
    monkeypatch.setattr(selftest_checks, "independent_ms", lambda fn, device, budget: (theirs, "scripted"))


def test_timers_that_wander_more_than_they_disagree_cannot_be_checked(monkeypatch):
    # a busy machine: the pair's ratio wanders ±27% from round to round, the medians are 7% apart
    _scripted_timers(monkeypatch, [6.0, 8.0, 10.0, 10.7, 11.4, 13.4, 15.4])
    check = selftest_checks.timer_agreement("cpu", quick=True, rounds=7)
    assert check.status == NOT_HERE
    assert "7.0% apart" in check.figure and "too busy for a 5% check" in check.reason


def test_timers_that_disagree_more_than_they_wander_fail(monkeypatch):
    _scripted_timers(monkeypatch, [10.6, 10.7, 10.7, 10.8, 10.7, 10.6, 10.7])
    check = selftest_checks.timer_agreement("cpu", quick=True, rounds=7)
    assert check.status == FAILED and "7.0% apart" in check.figure


def test_timers_within_the_bound_pass_however_they_wander(monkeypatch):
    _scripted_timers(monkeypatch, [5.0, 9.0, 10.2, 10.3, 10.4, 12.0, 16.0])
    assert selftest_checks.timer_agreement("cpu", quick=True, rounds=7).status == PASSED


def test_a_wrong_flop_count_fails_the_closed_form_check(monkeypatch):
    real = variants.get("dense")
    monkeypatch.setitem(variants.registry._REGISTRY, "dense", __import__("dataclasses").replace(
        real, flops=lambda spec: 2 * real.flops(spec)))
    check = selftest_checks.cost_closed_form("dense", "cpu", quick=True)
    assert check.status == FAILED and "4·B·H·D·pairs" in check.figure


def test_sdpa_choice_says_which_backends_run_here():
    check = selftest_checks.sdpa_choice("cpu", quick=True)
    assert check.status in (PASSED, FAILED)
    assert "backends that run here: flash, math" in check.reason
    assert "auto chose" in check.figure


def test_cuda_without_a_gpu_exits_2_with_one_line(capsys):
    assert main(["selftest", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err


def test_the_result_is_a_run_that_exports(monkeypatch, capsys):
    fake = {"device": "cpu", "device_name": "CPU", "quick": True, "mode": "all", "complete": True,
            "checks": [selftest.Check("x", "cost", PASSED, "1 shape(s) agree").to_dict(),
                       selftest.Check("y", "timing", FAILED, "attn 2 ms vs 1 ms").to_dict()],
            "passed": 1, "failed": 1, "not_possible": 0, "wall_s": 0.1}
    monkeypatch.setattr(selftest, "run_selftest", lambda device, quick=False: dict(fake))
    assert main(["selftest", "--device", "cpu", "--quick", "--json"]) == 1  # a check failed
    out = json.loads(capsys.readouterr().out)
    run = RunStore().get(out["run_id"])
    assert run.kind == "selftest" and run.results["checks"][1]["figure"] == "attn 2 ms vs 1 ms"
    csv_text = RunStore().export([out["run_id"]], fmt="csv")
    assert len(csv_text.strip().splitlines()) == 3  # a header and a row per check
    assert "attn 2 ms vs 1 ms" in csv_text
