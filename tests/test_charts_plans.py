"""The planner's frontier: which plans are dominated (ui.planner.frontier_points) and how the
chart draws them (charts.plan_frontier_chart), from hand-made plan results."""
from __future__ import annotations

from attn import charts
from attn.charts.plans import BASE_COLOR
from ui import planner


def result(plan: str, cosine: float | None, core: float, kv8k: int, base_core: float = 100.0,
           base_kv: int = 1000) -> dict:
    quality = ({"measured": True, "mean_cosine": cosine, "spearman": cosine} if cosine is not None
               else {"measured": False, "reason": "presets have random weights"})
    return {"model": {"name": "m"}, "plan": {"plan": plan}, "seq_len": 32, "quality": quality,
            "flops": {"totals": {"attention_core_flops": core, "base_attention_core_flops": base_core,
                                 "attention_core_flops_saved": 1 - core / base_core}},
            "kv_cache": {"bytes_per_token": 10, "contexts": [{"context": 8192, "bytes": kv8k, "base_bytes": base_kv,
                                                              "saved": 1 - kv8k / base_kv}]}}


def entry(plan: str, *args, **kwargs) -> dict:
    return {"label": plan, "model": "m", "result": result(plan, *args, **kwargs), "maps": None, "run_id": 3}


ENTRIES = [entry("w8", 0.9, 40.0, 500), entry("w4", 0.8, 20.0, 500), entry("w4-bad", 0.7, 30.0, 500)]


def test_a_plan_worse_on_both_axes_is_dominated_by_the_cheapest_that_beats_it():
    points = {p["label"]: p for p in planner.frontier_points(ENTRIES, "attention FLOPs")}
    assert not points["w8"]["dominated"] and not points["w4"]["dominated"]
    assert points["w4-bad"]["dominated"] and points["w4-bad"]["dominated_by"] == "w4"
    base = points["m (base)"]
    assert (base["quality"], base["cost"], base["dominated"], base["base"]) == (1.0, 100.0, False, True)


def test_on_the_kv_axis_equal_caches_leave_the_best_cosine_alone_on_the_frontier():
    points = {p["label"]: p for p in planner.frontier_points(ENTRIES, "KV cache at 8k")}
    assert not points["w8"]["dominated"] and not points["m (base)"]["dominated"]
    assert points["w4"]["dominated_by"] == "w8" and points["w4-bad"]["dominated_by"] == "w8"


def test_plans_without_a_measured_quality_give_no_frontier():
    assert planner.frontier_points([entry("w4", None, 20.0, 500)], "attention FLOPs") == []


def test_the_table_says_cost_only_and_not_timed_rather_than_a_number():
    row = planner.table_rows([entry("w4", None, 20.0, 500)])[0]
    assert (row["mean cosine"], row["Spearman"], row["prefill plan / base"]) == ("cost only", "—", "not timed")
    assert row["attention FLOPs saved"] == "80.0%" and row["run"] == "#3"


def test_the_chart_greys_the_dominated_and_joins_the_frontier_with_a_step_line():
    fig = charts.plan_frontier_chart(planner.frontier_points(ENTRIES, "attention FLOPs"), "attention FLOPs (FLOP)")
    line = fig.data[0]
    assert line.name == "frontier" and line.line.shape == "hv"
    assert list(line.x) == [20.0, 40.0, 100.0] and list(line.y) == [0.8, 0.9, 1.0]
    markers = {t.text[0]: t for t in fig.data[1:]}
    assert markers["w4-bad"].marker.color == charts.DOMINATED_COLOR
    assert "dominated by w4" in markers["w4-bad"].hovertemplate
    assert markers["w4"].marker.color not in (charts.DOMINATED_COLOR, markers["w8"].marker.color)
    assert markers["m (base)"].marker.color == BASE_COLOR
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.title.text == "mean cosine to the base"


def test_a_single_plan_is_one_marker_and_no_line():
    fig = charts.plan_frontier_chart([{"label": "a", "cost": 1.0, "quality": 0.5, "dominated": False,
                                       "dominated_by": None}], "x")
    assert [t.name for t in fig.data] == ["a"]
