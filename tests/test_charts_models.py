"""Figure builders of the Models page: the model-view mosaic and its click targets, the clickable
statistics grid, per-layer cost bars, module timings, the KV-cache curve, implementations."""
import base64
import io
import math

import numpy as np
import plotly.colors
import pytest
from PIL import Image

from attn import charts
from attn.models import kv_cache_curve, layer_costs, preset_config


def _maps(layers=2, heads=3, cells=4):
    rng = np.random.default_rng(0)
    w = rng.random((layers, heads, cells, cells)).astype(np.float32)
    return w / w.sum(-1, keepdims=True)  # rows are distributions, as attention is


def _mosaic_values(fig) -> np.ndarray:
    """The mosaic's colour levels back as values on its colour bar's scale; NaN in the gaps."""
    levels = charts.mosaic_levels(fig).astype(float)
    bar = fig.data[1].marker
    values = bar.cmin + levels / (charts.MOSAIC_LEVELS - 1) * (bar.cmax - bar.cmin)
    values[levels == charts.MOSAIC_LEVELS] = np.nan
    return values


def test_model_view_lays_the_maps_out_layer_by_head_with_gaps():
    maps = _maps()
    fig = charts.model_view(maps, log_scale=False)
    assert fig.data[0].type == "image" and fig.data[0].source.startswith("data:image/png;base64,")
    z = _mosaic_values(fig)
    step = 4 + charts.MOSAIC_GAP
    assert z.shape == (2 * step - charts.MOSAIC_GAP, 3 * step - charts.MOSAIC_GAP)
    # one colour level is a 254th of the scale
    np.testing.assert_allclose(z[step:step + 4, 2 * step:2 * step + 4], maps[1, 2],
                               atol=0.51 * maps.max() / (charts.MOSAIC_LEVELS - 1))
    assert np.isnan(z[4, :]).all() and np.isnan(z[:, 4]).all(), "a gap row and column between maps"
    assert [a.ticktext for a in (fig.layout.xaxis, fig.layout.yaxis)] == [("0", "1", "2"), ("0", "1")]


def test_the_mosaic_colours_follow_the_colour_bar():
    maps = _maps()
    fig = charts.model_view(maps, log_scale=False)
    bar = fig.data[1].marker
    assert bar.showscale and list(bar.colorscale[0]) == [0.0, charts.INFERNO[0]]
    assert (bar.cmin, bar.cmax) == (0.0, pytest.approx(float(maps.max())))
    levels = charts.mosaic_levels(fig)
    inside = levels[levels < charts.MOSAIC_LEVELS]
    assert inside.max() == charts.MOSAIC_LEVELS - 1, "the largest weight takes the top colour"
    # the image's palette is the colour bar's scale, interpolated as plotly interpolates it
    image = Image.open(io.BytesIO(base64.b64decode(fig.data[0].source.split(",", 1)[1])))
    palette = np.array(image.getpalette()[:3 * charts.MOSAIC_LEVELS]).reshape(-1, 3)
    for level in (0, 100, charts.MOSAIC_LEVELS - 1):
        expected = plotly.colors.unlabel_rgb(plotly.colors.sample_colorscale(
            charts.INFERNO, level / (charts.MOSAIC_LEVELS - 1))[0])
        np.testing.assert_allclose(palette[level], expected, atol=1)
    assert image.info["transparency"] == charts.MOSAIC_LEVELS, "the gaps are see-through"


def test_model_view_log_colours_stop_at_the_floor():
    maps = _maps()
    maps[0, 0, 0, 0] = 0.0  # log10 of the 1e-6 guard is -6, below the floor
    fig = charts.model_view(maps, log_scale=True)
    assert fig.data[1].marker.cmin == charts.MOSAIC_LOG_FLOOR
    assert charts.mosaic_levels(fig)[0, 0] == 0, "below the floor: the bottom colour"


def test_the_mosaic_is_light_to_send():
    rng = np.random.default_rng(1)
    w = rng.random((6, 12, 64, 64)).astype(np.float32)  # noise: the worst case for the PNG
    fig = charts.model_view(w / w.sum(-1, keepdims=True))
    assert len(fig.to_json()) < 600_000, "a float32 heatmap of these cells was about 2 MB"


def test_a_click_on_a_map_names_its_layer_and_head():
    fig = charts.model_view(_maps(), notes=np.array([["a", "b", "c"], ["d", "e", "f"]]))
    targets = fig.data[2]
    assert targets.type == "bar" and len(targets.x) == 6
    # the target of (layer 1, head 2) covers that map: centred on it, as wide and tall as it
    i = [tuple(c) for c in targets.customdata].index((1, 2))
    step = 4 + charts.MOSAIC_GAP
    assert targets.x[i] == 2 * step + 1.5 and targets.base[i] == step - 0.5
    assert targets.width == 4 and targets.y[i] == 4
    assert "layer 1 · head 2" in targets.hovertext[i] and "f" in targets.hovertext[i]
    # Streamlit reports customdata as a dict of positions
    assert charts.clicked_head({"customdata": {"0": 1, "1": 2}, "x": 11.5}) == (1, 2)
    assert charts.clicked_head({"customdata": [0, 1]}) == (0, 1)
    assert charts.clicked_head({"x": 3, "y": 2}) is None


def test_the_open_head_is_outlined():
    fig = charts.model_view(_maps(), selected=(1, 0))
    (shape,) = fig.layout.shapes
    step = 4 + charts.MOSAIC_GAP
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (-0.5, 3.5, step - 0.5, step + 3.5)
    assert not charts.model_view(_maps(), selected=(5, 5)).layout.shapes, "out of range: no outline"


def test_model_view_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="layers, heads, cells, cells"):
        charts.model_view(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="too many"):
        charts.model_view(np.zeros((48, 2, 64, 64)))


def test_head_grids_put_each_statistic_in_a_panel_whose_cells_are_click_targets():
    entropy = np.arange(12, dtype=float).reshape(3, 4)
    fig = charts.head_grids([(entropy, "entropy", "bits"), (entropy * 2, "distance", "tokens")], selected=(2, 1))
    heats = [t for t in fig.data if t.type == "heatmap"]
    targets = [t for t in fig.data if t.type == "bar"]
    assert [(h.xaxis, h.yaxis) for h in heats] == [("x", "y"), ("x2", "y2")], "a panel each"
    assert [t.xaxis for t in targets] == ["x", "x2"], "each panel's cells are clickable"
    assert all(h.hoverinfo == "skip" for h in heats), "the targets carry the hover"
    np.testing.assert_array_equal(np.asarray(heats[1].z, dtype=float), entropy * 2)
    assert heats[0].colorbar.x < heats[1].colorbar.x, "a colour bar beside each panel"
    i = [tuple(c) for c in targets[1].customdata].index((2, 3))
    assert (targets[1].x[i], targets[1].base[i], targets[1].y[i]) == (3, 1.5, 1)
    assert "tokens 22" in targets[1].hovertext[i]
    assert charts.clicked_head({"customdata": {"0": 2, "1": 3}}) == (2, 3)
    assert [(s.xref, s.x0, s.y0) for s in fig.layout.shapes] == [("x", 0.5, 1.5), ("x2", 0.5, 1.5)], \
        "the open head outlined in every panel"
    assert [a.text for a in fig.layout.annotations] == ["entropy", "distance"]


def test_head_grids_refuse_statistics_of_different_shapes():
    with pytest.raises(ValueError, match="same"):
        charts.head_grids([(np.zeros((2, 3)), "a", ""), (np.zeros((3, 2)), "b", "")])
    with pytest.raises(ValueError, match="at least one"):
        charts.head_grids([])


def test_layer_cost_bars_stack_to_each_layers_total():
    rows = [c.to_dict() for c in layer_costs(preset_config("mistral-swa"), 512)]
    fig = charts.layer_cost_bars(rows)
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == [label for _, label, _ in charts.COST_PARTS]
    stacked = np.sum([np.asarray(t.y, dtype=float) for t in fig.data], axis=0)
    np.testing.assert_array_equal(stacked, [r["total_flops"] for r in rows])
    shares = np.sum([np.asarray(t.customdata, dtype=float) for t in fig.data], axis=0)
    np.testing.assert_allclose(shares, 1.0)


def test_module_time_bars_show_attention_and_mlp_per_layer():
    timing = {"layers": [{"layer": 0, "attention_ms": 1.0, "mlp_ms": 2.0},
                         {"layer": 1, "attention_ms": 1.5, "mlp_ms": 2.5}],
              "forward_ms": 8.0, "other_ms": 1.0, "timer": "perf_counter"}
    fig = charts.module_time_bars(timing)
    assert [list(t.y) for t in fig.data] == [[1.0, 1.5], [2.0, 2.5]]
    assert "forward 8 ms" in fig.layout.title.text and "perf_counter" in fig.layout.title.text


def test_kv_cache_chart_draws_the_window_line_only_for_windowed_models():
    contexts = [128, 1024, 8192]
    windowed = charts.kv_cache_chart(kv_cache_curve(preset_config("mistral-swa"), contexts), current=300)
    plain = charts.kv_cache_chart(kv_cache_curve(preset_config("llama-gqa"), contexts))
    assert len(windowed.data) == 4 and len(plain.data) == 3
    configured, mha, mqa = (np.asarray(t.y, dtype=float) for t in plain.data)
    assert (mha > configured).all() and (configured > mqa).all()  # 8 heads > 2 shared > 1
    assert windowed.layout.xaxis.range[0] == pytest.approx(math.log10(128) - 0.05)


def test_implementation_bars_name_what_could_not_run():
    rows = [{"impl": "eager", "ok": True, "reason": "", "first_ms": 12.0, "median_ms": 10.0, "p10_ms": 9.0,
             "p90_ms": 11.0, "max_abs_diff": 0.0},
            {"impl": "flex_attention", "ok": False, "reason": "RuntimeError: no compiler", "first_ms": None,
             "median_ms": None, "p10_ms": None, "p90_ms": None, "max_abs_diff": None}]
    fig = charts.implementation_bars(rows)
    assert list(fig.data[0].x) == ["eager"]
    assert "no compiler" in fig.layout.annotations[0].text


# -- serving and training -------------------------------------------------------------------------
def _serving_point(context, status="ok", window=None):
    cached = min(context, window - 1) if window else context
    return {"context": context, "status": status, "prefill_ms": context / 10, "prefill_ms_p10": context / 11,
            "prefill_ms_p90": context / 9, "decode_ms": 2.0, "decode_ms_p10": 1.5, "decode_ms_p90": 3.0,
            "cached_tokens": cached, "cache_bytes": cached * 512, "cache_held_bytes": context * 512,
            "cache_bytes_predicted": min(context, window or context) * 512}


def test_serving_chart_draws_ttft_and_decode_against_context_log_log():
    points = [_serving_point(128), _serving_point(512), {"context": 2048, "status": "not measured: budget"}]
    fig = charts.serving_chart(points)
    assert [t.name for t in fig.data] == [label for _, label, _ in charts.SERVING_LINES]
    ttft, decode = fig.data
    assert list(ttft.x) == [128, 512], "a point without numbers is left out"
    assert list(ttft.y) == [12.8, 51.2] and list(decode.y) == [2.0, 2.0]
    assert list(decode.error_y.array) == [1.0, 1.0] and list(decode.error_y.arrayminus) == [0.5, 0.5]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_kv_cache_measured_chart_draws_the_held_storage_only_where_it_differs():
    plain = charts.kv_cache_measured_chart([_serving_point(128), _serving_point(512)])
    assert [t.name for t in plain.data] == ["measured: the cache's tensors", "predicted (kv_cache_curve)"]
    measured, predicted = plain.data
    assert list(measured.y) == list(predicted.y) == [128 * 512, 512 * 512]
    windowed = charts.kv_cache_measured_chart([_serving_point(64, window=128), _serving_point(512, window=128)])
    assert len(windowed.data) == 3
    tensors, held, predicted = (list(t.y) for t in windowed.data)
    assert tensors == [64 * 512, 127 * 512] and held == [64 * 512, 512 * 512] and predicted == [64 * 512, 128 * 512]


def test_train_step_chart_puts_time_and_memory_in_two_panels():
    points = [{"seq": seq, "status": "ok", "forward_ms": seq / 100, "backward_ms": seq / 50, "step_ms": 3 * seq / 100,
               "step_ms_p10": 0.9 * 3 * seq / 100, "step_ms_p90": 1.1 * 3 * seq / 100, "peak_bytes": seq * 1000,
               "estimate_bytes": seq * 4000} for seq in (128, 256)]
    points.append({"seq": 512, "status": "does not fit: needs ~9 GiB, 4 GiB free on cpu"})
    fig = charts.train_step_chart(points)
    assert [t.name for t in fig.data] == [*(label for _, label, _, _ in charts.TRAIN_LINES), "peak, measured",
                                          "estimate checked before running"]
    assert [t.xaxis for t in fig.data] == ["x", "x", "x", "x2", "x2"]
    assert list(fig.data[2].y) == [3.84, 7.68] and fig.data[2].error_y.array is not None
    assert list(fig.data[3].y) == [128_000, 256_000] and list(fig.data[4].y) == [512_000, 1_024_000]
    assert {fig.layout.xaxis.type, fig.layout.xaxis2.type, fig.layout.yaxis.type, fig.layout.yaxis2.type} == {"log"}


def test_log_ticks_run_one_two_five_across_the_values():
    assert charts.log_ticks([30.0, 700.0]) == [20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
    assert charts.log_ticks([0.0, None]) == []
    fig = charts.serving_chart([_serving_point(128), _serving_point(512)])
    # from the lowest p10 (decode, 1.5 ms) to the highest p90 (TTFT at 512: 512 / 9 ms)
    assert list(fig.layout.yaxis.tickvals) == charts.log_ticks([1.5, 512 / 9]) == [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
