"""attn.models.plan_maps: the maps before and after a plan, and tasks.plan_task around it."""
from __future__ import annotations

import numpy as np

from attn.models.plan_maps import plan_maps
from attn.tasks import plan_task

TEXT = "The old bridge was built by the Romans almost two thousand years ago and is still in use."


def test_a_full_plan_draws_the_base_maps_again():
    maps = plan_maps("minilm", "all:full", text=TEXT, max_tokens=16)
    assert maps["before"].shape == maps["after"].shape == (6, 12, 16, 16)
    np.testing.assert_allclose(maps["after"], maps["before"], atol=1e-5)


def test_a_window_keeps_each_query_within_its_window_and_rows_still_sum_to_one():
    maps = plan_maps("minilm", "0:sliding_window:4", text=TEXT, max_tokens=16)
    after = maps["after"][0]  # (heads, T, T), layer 0 windowed
    far = np.abs(np.arange(16)[:, None] - np.arange(16)[None, :]) >= 4
    assert after[:, far].max() == 0.0 and maps["before"][0][:, far].max() > 0
    np.testing.assert_allclose(after.sum(-1), 1.0, atol=1e-5)


def test_plan_task_returns_the_report_with_maps_and_moves_the_bar():
    class Report:
        seen: list = []

        def progress(self, fraction, message):
            self.seen.append((fraction, message))

    report = Report()
    out = plan_task("minilm", "0-4:sliding_window:8", text=TEXT, max_tokens=24, measure=False, map_tokens=12,
                    report=report)
    assert out["plan"]["plan"].startswith("0-4:sliding_window:8") and "timing" not in out
    assert out["maps"]["after"].shape[-1] == 12 and report.seen[-1][0] == 1.0
    fractions = [f for f, _ in report.seen]
    assert fractions == sorted(fractions), "the bar only moves forward"
    said = " / ".join(m for _, m in report.seen)
    # each stage says what it does as it starts: the model, the drift, the maps
    assert "loading the model" in said and "drift" in said and "maps before and after" in said, said
    assert "prefill" not in said, "no timing stage when nothing is timed"
