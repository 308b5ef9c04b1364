"""Figure builders: data in, figure out, checked without a browser."""

import numpy as np
import plotly.graph_objects as go
import pytest

from attn import charts
from attn.charts.style import _layout


def test_attention_heatmap_names_each_cell_by_its_ranges():
    values = np.array([[1.0, 0.0], [0.25, 0.75]])
    fig = charts.attention_heatmap(values, [0, 32, 64], [0, 1, 2])
    trace = fig.data[0]
    assert trace.type == "heatmap"
    assert list(trace.y) == ["0–31", "32–63"] and list(trace.x) == ["0", "1"]
    assert "queries %{y} × keys %{x}" in trace.hovertemplate
    assert fig.layout.yaxis.autorange == "reversed"  # query 0 on top, as in every attention plot


def test_a_long_text_labels_some_tokens_on_the_axes_and_every_token_in_the_hover():
    n = 128
    labels = [f"{i} tok" for i in range(n)]
    fig = charts.attention_heatmap(np.full((n, n), 1 / n), list(range(n + 1)), list(range(n + 1)),
                                   labels=(labels, labels))
    assert list(fig.data[0].y) == labels, "the hover names every token"
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.tickmode == "array" and 8 <= len(axis.tickvals) <= 16
        assert axis.tickvals[0] == "0 tok" and set(axis.tickvals) <= set(labels)
    short = [f"{i} t" for i in range(charts.LABELLED_TOKENS)]
    fig = charts.attention_heatmap(np.eye(len(short)), list(range(len(short) + 1)), list(range(len(short) + 1)),
                                   labels=(short, short))
    assert fig.layout.xaxis.tickvals is None, "a short text is labelled token by token"


def test_margins_leave_room_for_colour_bars_legends_and_token_labels():
    # plotly draws a figure twice when a margin must grow: each figure sizes its own
    bare = charts.bars(["a", "b"], [1, 2], "t", "y")
    assert bare.layout.margin.r == 20 and bare.layout.margin.b == 40, "nothing to make room for"
    heat = charts.attention_heatmap(np.eye(4) / 4, range(5), range(5))
    assert heat.layout.margin.r >= charts.COLORBAR_MARGIN
    legend = charts.layer_cost_bars([{"layer": 0, "attention_core_flops": 1, "qkv_flops": 1, "o_flops": 1,
                                      "mlp_flops": 1, "total_flops": 4}])
    taller = _layout(go.Figure([go.Bar(y=[1]), go.Bar(y=[2])]), "t", height=600)
    # the legend hangs a share of the plot's height below it: a taller figure needs more room
    assert 80 <= legend.layout.margin.b < taller.layout.margin.b
    short, long_ = ([f"{i} {word}" for i in range(8)] for word in ("a", "attention"))
    small, large = (charts.attention_heatmap(np.eye(8) / 8, range(9), range(9), labels=(w, w)).layout.margin
                    for w in (short, long_))
    assert large.l - small.l == large.b - small.b == charts.CHAR_PX * (len(long_[0]) - len(short[0]))
    for fig in (bare, heat, legend):
        assert fig.layout.xaxis.ticklabeloverflow == "allow" == fig.layout.yaxis.ticklabeloverflow


def test_log_scale_keeps_zero_weights_at_the_bottom_of_the_scale():
    fig = charts.attention_heatmap(np.array([[1.0, 0.0]]), [0, 1], [0, 1, 2], log_scale=True)
    z = np.asarray(fig.data[0].z)
    assert z[0, 0] == pytest.approx(0.0) and z[0, 1] == pytest.approx(-6.0)
    assert "log10" in fig.data[0].hovertemplate


def test_colour_scales_avoid_streamlits_placeholder_colours():
    fig = charts.attention_heatmap(np.eye(2), [0, 1, 2], [0, 1, 2])
    colours = [c for _, c in fig.data[0].colorscale]
    assert not any(c.lower() in {f"#0000{i:02x}" for i in range(1, 0x33)} for c in colours)


def test_a_map_too_large_to_draw_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="pool it"):
        charts.attention_heatmap(np.zeros((600, 10)), list(range(601)), list(range(11)))


def test_a_512_map_stays_under_two_megabytes():
    fig = charts.attention_heatmap(np.random.rand(512, 512), list(range(0, 8193, 16)), list(range(0, 8193, 16)))
    assert len(fig.to_json()) < 2_000_000


def test_mask_heatmap_is_a_share_between_zero_and_one():
    fig = charts.mask_heatmap(np.array([[1.0, 0.5]]), [0, 2], [0, 2, 4])
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1
    assert "of pairs visible" in fig.data[0].hovertemplate


POINTS = [
    {"variant": "dense", "x": 256, "status": "ok", "latency_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.2},
    {"variant": "dense", "x": 512, "status": "ok", "latency_ms": 4.0, "p10_ms": 3.8, "p90_ms": 4.5},
    {"variant": "dense", "x": 1024, "status": "oom", "message": "does not fit"},
    {"variant": "linear", "x": 256, "status": "ok", "latency_ms": 2.0, "p10_ms": 1.9, "p90_ms": 2.1},
    {"variant": "linear", "x": 512, "status": "ok", "latency_ms": 4.1, "p10_ms": 4.0, "p90_ms": 4.3},
]


def test_metric_curve_draws_a_line_per_variant_with_spread_and_marks_oom():
    fits = {"dense": {"latency_ms": {"exponent": 2.0, "coefficient": 1.0, "points": 2}}}
    fig = charts.metric_curve(POINTS, "latency_ms", fits=fits)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name.split()[0] for t in lines] == ["dense", "linear"]
    assert "x^2.00" in lines[0].name  # the fitted exponent is in the legend
    assert list(lines[0].error_y.array) == pytest.approx([0.2, 0.5])
    oom = [t for t in fig.data if t.mode == "markers"]
    assert len(oom) == 1 and list(oom[0].x) == [1024]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_metric_curve_places_mark_lines_at_their_values_and_labels_in_log_units():
    # plotly.js (as plotly 7 and Streamlit 1.67 bundle it) draws a shape on a log axis at
    # its data value, but an annotation at log10 of it
    cross = [{"metric": "latency_ms", "a": "dense", "b": "linear", "x": 500.0, "cheaper_after": "linear"}]
    fig = charts.metric_curve(POINTS, "latency_ms", crossovers=cross, current_x=1000)
    xs = sorted(shape.x0 for shape in fig.layout.shapes)
    assert xs == pytest.approx([500, 1000])
    assert sorted(a.x for a in fig.layout.annotations) == pytest.approx([np.log10(500), 3.0])


def test_flops_axis_says_useful_flops():
    pts = [{"variant": "dense", "x": 64, "status": "ok", "flops": 10}, {"variant": "dense", "x": 128, "status": "ok", "flops": 40}]
    assert "useful FLOPs" in charts.metric_curve(pts, "flops").layout.yaxis.title.text


def test_roofline_draws_the_measured_roof_and_the_runs():
    cal = {"matmul_tflops": {"float32": 1.0}, "bandwidth_gbps": 100.0}
    runs = [{"variant": "sdpa", "intensity": 50.0, "achieved_tflops": 0.2, "label": "#1"}]
    fig = charts.roofline(cal, runs, "float32")
    roof, dots = fig.data
    assert max(roof.y) == pytest.approx(1.0)  # the compute roof
    assert roof.y[0] == pytest.approx(roof.x[0] * 100e9 / 1e12)  # the memory slope
    assert list(dots.x) == [50.0] and dots.name == "sdpa"


def test_roofline_without_calibration_still_shows_runs():
    fig = charts.roofline(None, [{"variant": "dense", "intensity": 5.0, "achieved_tflops": 0.1}])
    assert len(fig.data) == 1


def test_telemetry_chart_says_when_a_series_is_unavailable():
    samples = [{"t": 1.0, "power_w": None}, {"t": 2.0, "power_w": None}]
    fig = charts.telemetry_chart(samples, "power_w", "power", marks=[(1.5, "▶ profile")], t0=2.0)
    assert any("not available" in a.text for a in fig.layout.annotations)
    assert fig.layout.shapes[0].x0 == pytest.approx(-0.5)




def test_job_marks_close_together_keep_their_names_in_the_hover_and_step_apart():
    samples = [{"t": float(t), "cpu_pct": 50.0} for t in range(10)]
    marks = [(5.0, "▶ started profile: sdpa at seq 1024"), (5.1, "■ ended profile: sdpa at seq 1024"),
             (5.2, "▶ started profile: dense at seq 1024")]
    fig = charts.telemetry_chart(samples, "cpu_pct", "CPU", marks, t0=10.0)
    labels = [a for a in fig.layout.annotations if a.hovertext]
    assert [a.text for a in labels] == ["▶", "■", "▶"]  # one character each on the chart
    assert [a.hovertext for a in labels] == [m[1] for m in marks]  # the names in the hover
    assert len({a.yshift for a in labels}) == 3  # neighbours on rows of their own
