"""Plotly figure builders: data in, figure out. No Streamlit, no torch, so each is testable alone.

Every figure that shows FLOPs says they are useful FLOPs (see attn.cost). The builders live by
page family: `maps.py` (attention maps and masks), `curves.py` (sweeps, the roofline, telemetry,
bars), `economics.py`, `devices.py` (devices side by side), `models.py`; `style.py` holds the colours, margins and layout they share.
"""
from attn.charts.curves import (FLOPS_AXIS, METRIC_LABELS, MODE_SYMBOLS, bars, latency_with_floor,
                               metric_curve, roofline, telemetry_chart)
from attn.charts.devices import DEVICE_METRICS, device_bars, device_label
from attn.charts.economics import (DOMINATED_COLOR, ERROR_FLOOR, context_fit_bars, decode_cost_chart,
                                   frontier_chart, per_token_curve)
from attn.charts.maps import LABELLED_TOKENS, MAX_CELLS, attention_heatmap, cache_strip, mask_heatmap
from attn.charts.models import (CACHE_LINES, COST_PARTS, KV_LINES, MOSAIC_GAP, MOSAIC_LEVELS, MOSAIC_LOG_FLOOR,
                                SERVING_LINES, TRAIN_LINES, clicked_head, head_grids, implementation_bars,
                                kv_cache_chart, kv_cache_measured_chart, layer_cost_bars, log_ticks, model_view,
                                module_time_bars, mosaic_levels, serving_chart, train_step_chart)
from attn.charts.plans import plan_frontier_chart
from attn.charts.style import (CHAR_PX, COLORBAR_MARGIN, GREYS, INFERNO, LEGEND_BELOW, LEGEND_PX,
                               VIRIDIS, color_of, fitted_margin)

__all__ = [
    "DEVICE_METRICS", "device_bars", "device_label",
    "FLOPS_AXIS", "METRIC_LABELS", "MODE_SYMBOLS", "bars", "latency_with_floor", "metric_curve",
    "roofline", "telemetry_chart",
    "DOMINATED_COLOR", "ERROR_FLOOR", "context_fit_bars", "decode_cost_chart", "frontier_chart",
    "per_token_curve",
    "LABELLED_TOKENS", "MAX_CELLS", "attention_heatmap", "cache_strip", "mask_heatmap",
    "COST_PARTS", "KV_LINES", "MOSAIC_GAP", "MOSAIC_LEVELS", "MOSAIC_LOG_FLOOR", "clicked_head",
    "head_grids", "implementation_bars", "kv_cache_chart", "layer_cost_bars", "model_view",
    "module_time_bars", "mosaic_levels",
    "CACHE_LINES", "SERVING_LINES", "TRAIN_LINES", "kv_cache_measured_chart", "log_ticks", "serving_chart",
    "train_step_chart",
    "plan_frontier_chart",
    "CHAR_PX", "COLORBAR_MARGIN", "GREYS", "INFERNO", "LEGEND_BELOW", "LEGEND_PX", "VIRIDIS",
    "color_of", "fitted_margin",
]
