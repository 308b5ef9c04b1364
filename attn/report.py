"""A self-contained HTML report of saved runs, for people who will not open the dashboard.

One file: plotly.js is inlined once in the head and every figure is drawn by it, so the report
opens from a disk, an e-mail or an archive with no network. Per run: the attention map beside
the curves, the measured numbers, the cost model, the spec and the environment it ran in. Every
piece of text from a run is escaped. Each run names its mode (forward, train or decode; runs
saved before the regimes are forward) and shows that regime's own numbers: train its forward and
backward times, saved memory and gradient error; decode its time per token, bytes read, achieved
bandwidth and bandwidth floor.

Maps come from the run when it saved them; otherwise they are recomputed for the run's spec and
variant on seeded inputs (small: `map_cells` cells a side), unless that would be slow, in which
case the report says so. Importing this module loads no torch: the pieces that recompute import
it inside the functions that need them.
"""
from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np

from attn import charts
from attn import readable as fmt
from attn.regime_numbers import LATENCY_WORDS, MODE_WORDS, numbers_of, regime_rows
from attn.runs import Run, spec_short
from attn.spec import SHARED_FIELDS

MAP_CELLS = 128
# a map recomputed for a report visits seq * kv_seq * heads weights; past this it takes too long
MAP_WORK_LIMIT = 2**27
MAX_SWEEP_MAPS = 4
WALL_SPAN = 4  # walls drawn on the curves only up to 4x the longest measured length
REPORT_TEMPLATE = "plotly_white"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1280px; padding: 24px; color: #0f172a; background: #ffffff; }
h1 { margin-bottom: 0; } h2 { margin-top: 0; border-bottom: 2px solid #e2e8f0; padding-bottom: 4px; }
section.run { border: 1px solid #e2e8f0; border-radius: 8px; padding: 16px; margin: 24px 0; }
.meta, .note { color: #475569; } .note { font-size: 12px; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
.row > div { flex: 1 1 560px; min-width: 0; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { color: #334155; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; flex-wrap: wrap; gap: 24px; }
nav a { margin-right: 12px; }
"""


def html_report(runs: Sequence[Run], title: str = "attn report", map_cells: int = MAP_CELLS) -> str:
    """The runs as one HTML page that needs no network to open (plotly.js inlined once)."""
    runs = list(runs)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(f'<a href="#run-{int(r.id)}">#{int(r.id)} {_e(r.variant or r.kind)}</a>' for r in runs)
    body = "\n".join(_run_section(run, map_cells) for run in runs) or "<p>No runs.</p>"
    return html_page(title, f"<p class=\"meta\">{len(runs)} run(s) · made {when} by attn · "
                            "FLOPs are useful FLOPs: 4·B·H·D per unmasked (query, key) pair</p>\n"
                            f"<nav>{nav}</nav>\n{body}")


def html_page(title: str, body: str, css: str = "") -> str:
    """One HTML page with plotly.js inlined once in its head, so its figures (`figure_html`) draw
    with no network; `body` is HTML that follows the title."""
    from plotly.offline import get_plotlyjs

    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}{css}</style>\n"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


# -- one run -----------------------------------------------------------------------------------
def _run_section(run: Run, map_cells: int) -> str:
    heading = f"#{int(run.id)} · {_e(run.kind)}" + (f" · {_e(run.variant)}" if run.variant else "")
    if run.kind in ("profile", "sweep"):  # model runs and maps have no regime of their own
        heading += f" · {_e(run.mode)}"
    meta = [_e(run.created_at[:19].replace("T", " ")) + " UTC", _e(run.device or "device unknown"),
            _e(spec_short(run.spec))]
    if run.label:
        meta.insert(0, f"<b>{_e(run.label)}</b>")
    if run.tags:
        meta.append("tags: " + _e(", ".join(map(str, run.tags))))
    if run.kind == "sweep":
        figures, tables = _sweep_parts(run, map_cells)
    elif run.kind == "profile":
        figures, tables = _profile_parts(run, map_cells)
    else:
        figures, tables = _other_parts(run, map_cells)
    tables.append(_table("Spec", _spec_rows(run)))
    tables.append(_table("Environment", [(k, v) for k, v in run.environment.items()]))
    return (f'<section class="run" id="run-{int(run.id)}">\n<h2>{heading}</h2>\n'
            f'<p class="meta">{" · ".join(meta)}</p>\n'
            f'<div class="row">{"".join(f"<div>{f}</div>" for f in figures)}</div>\n'
            f'<div class="tables">{"".join(tables)}</div>\n</section>')




def _spec_rows(run: Run) -> list[tuple[str, Any]]:
    """The spec's shape and the parameters of the run's own variants (not every variant's)."""
    from attn import variants  # lazy: torch, only for a run that names variants (see the docstring)

    own: set[str] = set()
    for name in (run.variant or "").split(","):
        if name in variants.names():
            own.update(variants.get(name).param_names)
    if not own and not set(SHARED_FIELDS) & set(run.spec):
        return list(run.spec.items())
    return [(k, v) for k, v in run.spec.items() if k in SHARED_FIELDS or k in own]


# the analytic curve beside a profile, per mode: (axis, its label, metric, the metric's label, title)
_CURVES = {
    "forward": ("seq", "sequence length", "flops", "useful FLOPs",
                "useful FLOPs across lengths (analytic); the line marks this run"),
    "train": ("seq", "sequence length", "flops", "useful FLOPs of a training step",
              "training-step FLOPs (forward + backward) across lengths (analytic); the line marks this run"),
    "decode": ("context", "context (cached keys)", "bytes_read", "bytes read per step",
               "bytes a decode step reads across context (analytic); the line marks this run"),
}


def _cost_curve(run: Run) -> str:
    """The cost model along the run's own axis, in the run's mode, with the run marked."""
    # lazy, as the maps below: torch and the variants load only for a report that draws this
    from attn.cost import attention_cost
    from attn.spec import AttentionSpec
    from attn.sweep import spec_at

    if run.mode not in _CURVES:
        return _note(f"no cost curve: this attn does not know the mode {run.mode!r}")
    axis, axis_label, metric, metric_label, title = _CURVES[run.mode]
    spec = AttentionSpec.from_dict(run.spec)
    at = spec.kv_seq if axis == "context" else spec.seq
    xs = sorted({max(16, at // 16) * 2**i for i in range(9)} | {at})
    if axis == "context":  # a decode step's new tokens are the last of its cache
        xs = [x for x in xs if x >= spec.seq]
    curve = [{"variant": run.variant, "status": "ok", "x": x,
              metric: getattr(attention_cost(spec_at(spec, axis, x), run.variant, run.mode), metric)}
             for x in xs]
    fig = charts.metric_curve(curve, metric, title=title, current_x=at, x_label=axis_label, height=420)
    fig.update_yaxes(title=metric_label)
    fig.update_shapes(line_color="#0f172a")
    return _figure(fig)


def _profile_parts(run: Run, map_cells: int) -> tuple[list[str], list[str]]:
    r = run.results
    figures = [_map_html(run, run.spec, run.variant, map_cells)]
    try:
        figures.append(_cost_curve(run))
    except Exception as err:  # an old or foreign spec: the numbers still make a report
        figures.append(_note(f"no cost curve: {err}"))
    latency = {"forward": "latency (median)"}.get(run.mode, "step (median)")
    rows = [("mode", MODE_WORDS.get(run.mode, run.mode)),
            (latency, fmt.ms(r.get("latency_ms"))),
            ("p10 – p90", f"{fmt.ms(r.get('p10_ms'))} – {fmt.ms(r.get('p90_ms'))}"),
            *regime_rows(r, run.mode),
            ("useful FLOPs", fmt.si(r.get("flops"), "FLOP")),
            ("achieved", fmt.si(_mul(r.get("achieved_tflops"), 1e12), "FLOP/s")),
            ("roofline", "—" if r.get("roofline_pct") is None else f"{r['roofline_pct']:.1f}%"),
            ("peak memory", fmt.nbytes(r.get("peak_bytes"))),
            ("kernel error", fmt.ratio(r.get("kernel_error"))), ("approx error", fmt.ratio(r.get("approx_error"))),
            ("energy per call", "—" if r.get("energy_j") is None else f"{r['energy_j']:.4g} J"),
            ("inputs", r.get("inputs") or "random (seeded)"),
            ("backend", r.get("backend")), ("timing", r.get("timing_method")),
            ("memory", r.get("memory_method"))]
    if run.mode in LATENCY_WORDS:
        rows.append(("what the step is", LATENCY_WORDS[run.mode]))
    if r.get("flops_convention"):
        rows.append(("FLOPs convention", r["flops_convention"]))
    tables = [_table("Measured", rows)]
    cost = r.get("cost") or {}
    if cost:
        tables.append(_table("Cost model (analytic)", [
            *_regime_cost_rows(cost),
            ("pairs computed", f"{cost.get('pairs', 0):,} of {cost.get('full_pairs', 0):,}"),
            ("useful FLOPs", fmt.si(cost.get("flops"), "FLOP")),
            ("projection FLOPs", fmt.si(cost.get("proj_flops"), "FLOP")),
            ("minimum bytes moved", fmt.nbytes(cost.get("min_bytes"))),
            ("est. peak", fmt.nbytes(cost.get("peak_bytes"))),
            ("KV cache per token and layer", fmt.nbytes(cost.get("kv_cache_bytes_per_token"))),
            ("projection parameters", f"{cost.get('params', 0):,}"),
            ("arithmetic intensity", _num(cost.get("arithmetic_intensity"), " FLOP/B"))]))
    return figures, tables


def _regime_cost_rows(cost: dict[str, Any]) -> list[tuple[str, str]]:
    """What the cost model says of the regime itself (nothing for a forward call)."""
    if cost.get("mode") == "train":
        return [("FLOPs executed", fmt.si(cost.get("flops_executed"), "FLOP")),
                ("saved for the backward", fmt.nbytes(cost.get("saved_bytes"))),
                ("backward workspace", fmt.nbytes(cost.get("backward_bytes"))),
                ("step allocates", fmt.nbytes(cost.get("step_bytes")))]
    if cost.get("mode") == "decode":
        keys = cost.get("cached_keys")
        return [("bytes read per step", fmt.nbytes(cost.get("bytes_read"))),
                ("cached keys read", "— (a recurrent state)" if not keys else f"{keys:,}")]
    return []


def _sweep_parts(run: Run, map_cells: int) -> tuple[list[str], list[str]]:
    r = run.results
    points = r.get("points") or []
    axis = r.get("axis", "seq")
    label = {"seq": "sequence length", "context": "context (cached keys)"}.get(axis, axis)
    figures = []
    largest = max((p["x"] for p in points), default=0)
    # a wall projected far past the measured lengths would squeeze the curves into a corner;
    # the table below lists every wall
    near_walls = [w for w in r.get("walls") or [] if w.get("x") and w["x"] <= WALL_SPAN * largest]
    for metric in ("latency_ms", "peak_bytes"):
        fig = charts.metric_curve(points, metric, x_label=label, fits=r.get("fits"),
                                  crossovers=r.get("crossovers") or [], walls=near_walls, height=400)
        figures.append(_figure(fig))
    names = list(dict.fromkeys(p["variant"] for p in points))
    for name in names[:MAX_SWEEP_MAPS]:
        spec = _map_spec_of(points, name)
        if spec is None:
            figures.append(_note(f"{name}: no measured point to draw a map for"))
        else:
            figures.append(_map_html(None, spec, name, map_cells,
                                     title=f"{name} at {axis} {spec.get(axis, '?')}, head 0"))
    if len(names) > MAX_SWEEP_MAPS:
        figures.append(_note(f"maps of the first {MAX_SWEEP_MAPS} variants only"))
    # the regime's own numbers after the common ones (train: forward, backward, ...; decode: per token, ...)
    extra = [n for n in numbers_of(run.mode) if any(n.value(p) is not None for p in points)]
    point_rows = [[p["variant"], f"{p['x']:,}", p.get("status", ""), fmt.ms(p.get("latency_ms")),
                   *(n.text(n.value(p)) for n in extra),
                   fmt.nbytes(p.get("peak_bytes")), fmt.si(p.get("flops"), "FLOP"), fmt.ratio(p.get("approx_error")),
                   "—" if p.get("energy_j") is None else f"{p['energy_j']:.4g} J",
                   p.get("message", "") if p.get("status") != "ok" else ""] for p in points]
    latency = {"forward": "latency"}.get(run.mode, "step")
    tables = [_grid(f"Points ({run.mode}: {LATENCY_WORDS.get(run.mode, 'median')})",
                    ["variant", axis, "status", latency, *(n.label for n in extra), "peak", "useful FLOPs",
                     "approx error", "energy", "note"], point_rows)]
    fits = r.get("fits") or {}
    if fits:
        tables.append(_grid("Fitted growth (y ∝ x^k)", ["variant", "latency k", "peak k", "FLOPs k"],
                            [[n, *(_num((fs.get(m) or {}).get("exponent")) for m in ("latency_ms", "peak_bytes", "flops"))]
                             for n, fs in fits.items()]))
    walls = r.get("walls") or []
    if walls:
        tables.append(_grid("Memory wall (longest that fits)", ["variant", axis, "how", "note"],
                            [[w["variant"], "—" if not w.get("x") else f"{w['x']:,}",
                              "projected" if w.get("projected") else "measured", w.get("note", "")]
                             for w in walls]))
    crossings = r.get("crossovers") or []
    if crossings:
        tables.append(_grid("Crossovers", ["metric", "between", "at", "cheaper beyond"],
                            [[c["metric"], f"{c['a']} / {c['b']}", f"{c['x']:,.0f}", c["cheaper_after"]]
                             for c in crossings]))
    return figures, tables


def _other_parts(run: Run, map_cells: int) -> tuple[list[str], list[str]]:
    figures = []
    saved = _saved_map(run.maps)
    if saved is not None:
        figures.append(_heatmap_html(saved, f"saved map · {run.variant or run.kind}"))
    elif run.kind == "maps" and run.variant:
        figures.append(_map_html(run, run.spec, run.variant, map_cells))
    scalars = [(k, v) for k, v in run.results.items() if _is_scalar(v)]
    tables = [_table("Results", scalars or [("results", "no single numbers; see the JSON export")])]
    return figures, tables


# -- maps --------------------------------------------------------------------------------------
def _map_spec_of(points: list[dict], variant: str) -> dict | None:
    """The spec of the longest point of a variant whose map is cheap to recompute (else the
    shortest point)."""
    ok = sorted((p for p in points if p["variant"] == variant and p.get("status") == "ok" and p.get("spec")),
                key=lambda p: p["x"])
    if not ok:
        return None
    cheap = [p for p in ok if _map_work(p["spec"]) <= MAP_WORK_LIMIT]
    return (cheap[-1] if cheap else ok[0])["spec"]


def _map_work(spec: dict) -> int:
    seq = int(spec.get("seq") or 0)
    return seq * int(spec.get("kv_seq") or seq) * int(spec.get("heads") or 1)


def _saved_map(maps: dict | None) -> dict | None:
    """A drawable map out of what a run saved: maps_json's {"map": {...}} or a bare map, with
    values of one head (rows, cols) or of several heads (heads, rows, cols: head 0 is drawn)."""
    if not isinstance(maps, dict):
        return None
    m = maps.get("map") if isinstance(maps.get("map"), dict) else maps
    values = m.get("values")
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 3:
        values = values[0]
    if values.ndim != 2 or max(values.shape) > charts.MAX_CELLS:
        return None
    rows, cols = values.shape
    q_edges = list(np.asarray(m.get("q_edges", np.arange(rows + 1))).tolist())
    k_edges = list(np.asarray(m.get("k_edges", q_edges if rows == cols else np.arange(cols + 1))).tolist())
    if len(q_edges) != rows + 1 or len(k_edges) != cols + 1:
        return None
    return {"values": values, "q_edges": q_edges, "k_edges": k_edges}


def _map_html(run: Run | None, spec: dict, variant: str | None, map_cells: int, title: str = "") -> str:
    saved = _saved_map(run.maps) if run is not None else None
    if saved is not None:
        return _heatmap_html(saved, title or f"{variant}, head 0 (saved with the run)")
    if not variant:
        return _note("no map: the run names no variant")
    if _map_work(spec) > MAP_WORK_LIMIT:
        return _note(f"no map: recomputing {variant} at seq {spec.get('seq')} is too slow for a "
                     "report; save maps with the run to include them")
    try:
        # lazy: torch and the variants load only when a map has to be recomputed
        from attn.maps import maps_json
        from attn.spec import AttentionSpec

        # recomputed on the CPU: the report is made where the run store is, not where it ran
        m = maps_json(AttentionSpec.from_dict(spec).with_(device="cpu"), variant, 0, map_cells)["map"]
    except Exception as err:  # a spec this attn cannot run any more: say so, keep the report
        return _note(f"no map for {variant}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    what = "exact" if m["exact"] else f"{m['reduce']}-pooled"
    return _heatmap_html(m, title or f"{variant}, head 0 ({what}, recomputed on seeded inputs)")


def _heatmap_html(m: dict, title: str) -> str:
    fig = charts.attention_heatmap(m["values"], m["q_edges"], m["k_edges"], title=title, log_scale=True)
    return _figure(fig)


# -- html pieces (figure_html, table_html, escape: also the story's, attn.story.report) ----------
def _figure(fig: Any) -> str:
    fig.update_layout(template=REPORT_TEMPLATE, legend=dict(orientation="h", y=-0.25))
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(title: str, rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_text(v))}</td></tr>" for k, v in rows)
    return f"<div><h3>{_e(title)}</h3><table>{body}</table></div>"


def _grid(title: str, header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(_text(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<div><h3>{_e(title)}</h3><table><tr>{head}</tr>{body}</table></div>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_text, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


def _mul(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _num(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:.3g}{unit}"


figure_html, table_html, escape = _figure, _table, _e
