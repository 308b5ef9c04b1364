"""Figure builders of the regimes: a decode step's strip, the bandwidth floor beside a decode
sweep's latency, saved memory against length, and the roofline marked by regime."""
import numpy as np
import pytest

from attn import charts
from attn.profiles import roofline_intensity


def test_a_decode_strip_names_its_rows_by_their_place_in_the_cache():
    # one new token at position 4095 of a 4096-key cache, pooled to 4 cells of 1024 keys
    values = np.array([[0.1, 0.2, 0.3, 0.4]])
    fig = charts.cache_strip(values, [0, 1], [0, 1024, 2048, 3072, 4096], offset=4095)
    trace = fig.data[0]
    assert list(trace.y) == ["4095"]
    assert list(trace.x) == ["0–1023", "1024–2047", "2048–3071", "3072–4095"]
    assert list(fig.layout.xaxis.ticktext) == ["0", "1024", "2048", "3072"]  # a key each starts at
    assert "token %{y} × keys %{x}" in trace.hovertemplate
    assert fig.layout.height < 250, "one row is a strip, not a square"


def test_a_strip_grows_with_its_rows_up_to_a_square_maps_height():
    heights = [charts.cache_strip(np.full((rows, 8), 1 / 8), list(range(rows + 1)), list(range(9)),
                                  offset=100).layout.height for rows in (1, 8, 64)]
    assert heights[0] < heights[1] < heights[2] == 420
    many = charts.cache_strip(np.full((64, 8), 1 / 8), list(range(65)), list(range(9)), offset=100)
    assert len(many.layout.yaxis.tickvals) <= 8 and many.layout.yaxis.tickvals[0] == "100"


def test_a_strip_of_a_mask_is_a_share_and_weights_can_be_logged():
    mask = charts.cache_strip(np.array([[0.0, 1.0]]), [0, 1], [0, 2, 4], offset=3, mask=True)
    assert (mask.data[0].zmin, mask.data[0].zmax) == (0, 1)
    assert "of pairs visible" in mask.data[0].hovertemplate
    logged = charts.cache_strip(np.array([[1.0, 0.0]]), [0, 1], [0, 2, 4], offset=3, log_scale=True)
    assert np.asarray(logged.data[0].z)[0].tolist() == pytest.approx([0.0, -6.0])
    with pytest.raises(ValueError, match="pool it"):
        charts.cache_strip(np.zeros((1, 600)), [0, 1], list(range(601)), offset=0)


DECODE = [
    {"variant": "sdpa", "x": 1024, "status": "ok", "latency_ms": 0.5, "floor_ms": 0.1, "bytes_read": 2**20},
    {"variant": "sdpa", "x": 2048, "status": "ok", "latency_ms": 0.8, "floor_ms": 0.2, "bytes_read": 2**21},
    {"variant": "linear", "x": 1024, "status": "ok", "latency_ms": 0.3, "floor_ms": None, "bytes_read": 2**10},
    {"variant": "sdpa", "x": 4096, "status": "oom", "message": "does not fit"},
]


def test_a_decode_sweep_draws_each_variants_bandwidth_floor_beside_its_latency():
    fig = charts.latency_with_floor(DECODE)
    floors = [t for t in fig.data if t.name.endswith("floor")]
    assert [t.name for t in floors] == ["sdpa floor"], "no floor where none was measured"
    line = next(t for t in fig.data if t.name == "sdpa")
    assert floors[0].line.dash == "dash" and floors[0].line.color == line.line.color
    assert list(floors[0].x) == [1024, 2048] and list(floors[0].y) == pytest.approx([0.1, 0.2])
    assert floors[0].customdata[0][0] == "1 MiB"  # the hover says what was read
    assert fig.layout.xaxis.title.text == "context (cached keys)"
    assert "bandwidth floor" in fig.layout.title.text


def test_saved_memory_against_length_carries_each_variants_exponent():
    points = [{"variant": v, "x": x, "status": "ok", "saved_bytes": b}
              for v, grow in (("dense", 2), ("sdpa", 1)) for x, b in ((256, 256**grow), (512, 512**grow))]
    fits = {"dense": {"saved_bytes": {"exponent": 2.0}}, "sdpa": {"saved_bytes": {"exponent": 1.0}}}
    fig = charts.metric_curve(points, "saved_bytes", fits=fits)
    assert [t.name for t in fig.data] == ["dense  (∝ x^2.00)", "sdpa  (∝ x^1.00)"]
    assert fig.layout.yaxis.title.text == "saved for the backward (bytes)"


RUNS = [
    {"variant": "sdpa", "intensity": 50.0, "achieved_tflops": 0.2, "mode": "forward"},
    {"variant": "sdpa", "intensity": 40.0, "achieved_tflops": 0.1, "mode": "train"},
    {"variant": "sdpa", "intensity": 0.5, "achieved_tflops": 0.001, "mode": "decode"},
    {"variant": "dense", "intensity": 30.0, "achieved_tflops": 0.05},  # saved before the regimes
]


def test_the_roofline_marks_each_regime_with_its_own_symbol():
    fig = charts.roofline(None, RUNS)
    marks = {t.name: t.marker.symbol for t in fig.data}
    assert marks == {"sdpa · forward": "circle", "sdpa · train": "diamond",
                     "sdpa · decode": "triangle-up", "dense · forward": "circle"}
    colours = {t.name.split(" · ")[0]: set() for t in fig.data}
    for t in fig.data:
        colours[t.name.split(" · ")[0]].add(t.marker.color)
    assert all(len(c) == 1 for c in colours.values()), "a variant keeps one colour across regimes"
    assert "bytes read" in fig.layout.xaxis.title.text


def test_a_roofline_of_one_regime_names_only_the_variants():
    fig = charts.roofline(None, [RUNS[0], RUNS[3]])
    assert [t.name for t in fig.data] == ["sdpa", "dense"]


def test_a_decode_run_sits_at_its_flops_over_the_bytes_it_reads():
    cost = {"arithmetic_intensity": 0.9, "flops": 1000}
    assert roofline_intensity({"mode": "decode", "flops": 1000, "bytes_read": 4000, "cost": cost}) == 0.25
    assert roofline_intensity({"mode": "train", "flops": 3000, "cost": cost}) == 0.9
    assert roofline_intensity({"flops": 1000, "cost": cost}) == 0.9, "no mode: a forward run"
    assert roofline_intensity({"flops": 1000}) is None
