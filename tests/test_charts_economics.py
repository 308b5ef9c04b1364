"""Figure builders of the Economics page, and the marks on log-axis curves."""
from __future__ import annotations

import math

import pytest

from attn import charts


def test_frontier_chart_greys_the_dominated_and_joins_the_frontier():
    points = [{"label": "sdpa", "error": 1e-7, "cost": 2.0, "dominated": False, "dominated_by": None},
              {"label": "linear", "error": 0.3, "cost": 0.5, "dominated": False, "dominated_by": None},
              {"label": "performer", "error": 0.4, "cost": 3.0, "dominated": True, "dominated_by": "sdpa"},
              {"label": "exact0", "error": 0.0, "cost": 4.0, "dominated": False, "dominated_by": None}]
    fig = charts.frontier_chart(points, "latency (ms)")
    line, *markers = fig.data
    assert line.name == "frontier" and list(line.x) == [0.5, 2.0, 4.0]  # cheapest first
    colours = {t.text[0]: t.marker.color for t in markers}
    assert colours["performer"] == charts.DOMINATED_COLOR
    assert colours["sdpa"] == charts.color_of("sdpa") != charts.DOMINATED_COLOR
    assert "dominated by sdpa" in markers[2].hovertemplate
    assert markers[3].y[0] == charts.ERROR_FLOOR  # an error of 0 still sits on the log axis
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"


def test_context_fit_bars_hatch_the_projected_and_skip_the_unknown():
    fits = [{"variant": "sdpa", "max_seq": 20_000, "projected": False},
            {"variant": "linear", "max_seq": 900_000, "projected": True},
            {"variant": "dense", "max_seq": None, "projected": True}]
    bar = charts.context_fit_bars(fits, "80 GiB").data[0]
    assert list(bar.x) == ["sdpa", "linear"]
    assert list(bar.marker.pattern.shape) == ["", "/"]
    assert bar.text[1] == "900,000 (projected)"


def test_per_token_curve_draws_a_line_per_variant_with_its_own_axis_label():
    rows = [{"variant": v, "seq": s, "usd_per_mtok": s * k, "joules_per_mtok": None}
            for v, k in (("sdpa", 1.0), ("linear", 0.1)) for s in (256, 512)]
    fig = charts.per_token_curve(rows, "usd_per_mtok", "$ per million tokens")
    assert [t.name for t in fig.data] == ["sdpa", "linear"]
    assert fig.layout.yaxis.title.text == "$ per million tokens"
    assert charts.per_token_curve(rows, "joules_per_mtok", "J").data == ()  # no energy: no line


def test_decode_cost_chart_puts_the_floor_dashed_under_each_measured_line():
    rows = [{"variant": "sdpa", "context": c, "usd_per_mtok": c * 1e-4, "floor_usd_per_mtok": c * 2e-5}
            for c in (1024, 256)]
    rows.append({"variant": "linear", "context": 256, "usd_per_mtok": 0.01, "floor_usd_per_mtok": None})
    fig = charts.decode_cost_chart(rows)
    assert [t.name for t in fig.data] == ["sdpa (measured)", "sdpa (bandwidth floor)", "linear (measured)"]
    measured, floor, linear = fig.data
    assert list(measured.x) == [256, 1024]  # sorted by context
    assert list(floor.y) == pytest.approx([256 * 2e-5, 1024 * 2e-5]) and floor.line.dash == "dash"
    assert measured.line.color == floor.line.color == charts.color_of("sdpa")
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.title.text == "context (cached keys)"


@pytest.mark.parametrize("log", [True, False])
def test_marks_on_curves_put_the_line_at_the_value_and_the_label_in_axis_units(log):
    # plotly.js draws a shape on a log axis at its data value, and an annotation at log10 of it
    points = [{"variant": "sdpa", "x": x, "status": "ok", "peak_bytes": x * 10} for x in (100, 1000)]
    fig = charts.metric_curve(points, "peak_bytes", log=log, current_x=300,
                              walls=[{"variant": "sdpa", "x": 500, "projected": True}],
                              crossovers=[{"metric": "peak_bytes", "a": "a", "b": "b", "x": 200.0}])
    assert sorted(s.x0 for s in fig.layout.shapes) == [200.0, 300, 500]
    labels = {a.text: a.x for a in fig.layout.annotations}
    expect = (lambda x: math.log10(x)) if log else (lambda x: x)
    assert labels["current"] == pytest.approx(expect(300))
    assert labels["sdpa wall 500 (projected)"] == pytest.approx(expect(500))
    assert labels["a / b cross ≈ 200"] == pytest.approx(expect(200))
