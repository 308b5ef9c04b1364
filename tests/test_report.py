"""The HTML report: every run in it, text escaped, one inlined plotly.js and nothing fetched from
the network; in Chromium (browser test) its charts are drawn with every non-file request refused."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from attn.cli import main
from attn.report import html_report
from attn.runs import RunStore
from attn.spec import AttentionSpec

ROOT = Path(__file__).resolve().parent.parent
CPU = {"device": "Test CPU <2 cores>", "device_kind": "cpu", "torch": "2.13.0", "git_commit": "abc123"}
SPEC = AttentionSpec(seq=64, heads=2, head_dim=16, causal=True, device="cpu")
EVIL = '<script>alert("label")</script>'


def profile_results() -> dict:
    return {"variant": "sdpa", "spec": SPEC.to_dict(), "latency_ms": 0.25, "p10_ms": 0.2, "p90_ms": 0.3,
            "flops": 4 * 2 * 16 * 64 * 65 // 2, "achieved_tflops": 0.01, "peak_bytes": 20_000,
            "kernel_error": 1e-7, "approx_error": 1e-7, "energy_j": None, "backend": "flash",
            "cost": {"pairs": 2080, "full_pairs": 2080, "flops": 133120, "kv_cache_bytes_per_token": 256}}


def sweep_results() -> dict:
    points = [{"variant": v, "x": x, "status": "ok", "latency_ms": k * x / 100, "peak_bytes": int(k * x * 64),
               "flops": 4 * 2 * 16 * x * x, "approx_error": e, "spec": SPEC.with_(seq=x, kv_seq=x).to_dict()}
              for v, k, e in (("sdpa", 1.0, 1e-7), ("linear", 0.5, 0.3)) for x in (32, 64, 128)]
    points.append({"variant": "linear", "x": 256, "status": "oom", "message": "does not fit", "spec": {}})
    fits = {"sdpa": {"latency_ms": {"exponent": 1.0, "coefficient": 0.01, "points": 3}}}
    return {"axis": "seq", "xs": [32, 64, 128, 256], "variants": ["sdpa", "linear"], "device": "cpu",
            "points": points, "fits": fits, "spec": SPEC.to_dict(),
            "crossovers": [{"metric": "latency_ms", "a": "sdpa", "b": "linear", "x": 50.0, "cheaper_after": "linear"}],
            "walls": [{"variant": "sdpa", "x": 300, "budget_bytes": 2**30, "projected": True, "note": "projected"}]}


@pytest.fixture
def runs():
    store = RunStore()
    maps = {"map": {"values": np.full((4, 4), 0.25, np.float32), "q_edges": [0, 16, 32, 48, 64],
                    "k_edges": [0, 16, 32, 48, 64]}}
    ids = [store.save("profile", SPEC, profile_results(), variant="sdpa", environment=CPU, label=EVIL,
                      tags=["<b>tag</b>"]),
           store.save("sweep", SPEC, sweep_results(), variant="sdpa,linear", environment=CPU),
           store.save("maps", SPEC, {"max_size": 4}, variant="dense", environment=CPU, maps=maps)]
    return [store.get(i) for i in ids]


def test_the_report_holds_every_run_and_its_numbers(runs):
    text = html_report(runs)
    for run in runs:
        assert f'id="run-{run.id}"' in text
    assert "#2 · sweep · sdpa,linear" in text
    assert "250 µs" in text  # the profile's median latency
    assert "Memory wall" in text and "Crossovers" in text and "does not fit" in text
    assert "KV cache per token and layer" in text
    assert "abc123" in text  # the environment's commit
    # a map per profile, two curves and a map per variant for the sweep, the saved map of the maps run
    assert text.count('class="plotly-graph-div"') == 2 + 2 + 2 + 1


def test_the_report_escapes_every_text(runs):
    text = html_report(runs, title="Q3 <review> & co")
    assert EVIL not in text
    assert "&lt;script&gt;alert(&quot;label&quot;)&lt;/script&gt;" in text
    assert "<b>tag</b>" not in text and "&lt;b&gt;tag&lt;/b&gt;" in text
    assert "Test CPU &lt;2 cores&gt;" in text
    assert "<title>Q3 &lt;review&gt; &amp; co</title>" in text


def test_the_report_inlines_plotly_once_and_loads_nothing(runs):
    text = html_report(runs)
    assert len(re.findall(r"\* plotly\.js v\d", text)) == 1
    assert '<script src="http' not in text
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=[\"']?(https?:)?//", text)
    assert text.count("Plotly.newPlot(") == 7


def test_a_map_too_slow_to_recompute_is_left_out_with_a_reason():
    store = RunStore()
    big = SPEC.with_(seq=32768, kv_seq=32768, heads=32)
    run = store.get(store.save("profile", big, {**profile_results(), "spec": big.to_dict()}, variant="sdpa",
                               environment=CPU))
    text = html_report([run])
    assert "too slow for a report" in text
    assert "Plotly.newPlot(" in text  # the analytic curve is still drawn


def test_runs_export_html_from_the_command_line(runs, tmp_path, capsys):
    out = tmp_path / "report.html"
    code = main(["runs", "export", str(runs[0].id), str(runs[1].id), "--format", "html", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert f'id="run-{runs[1].id}"' in text and f'id="run-{runs[2].id}"' not in text


@pytest.mark.slow
@pytest.mark.browser
def test_the_report_draws_its_charts_in_chromium_with_no_network(runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(html_report(runs), encoding="utf-8")
    refused, errors = [], []

    def only_files(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route("**/*", only_files)
            page = context.new_page()
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            drawn = page.locator(".js-plotly-plot").count()
            heatmaps = page.locator(".js-plotly-plot .heatmaplayer image, .js-plotly-plot .hm").count()
            curves = page.locator(".js-plotly-plot .scatterlayer .trace").count()
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "report.png"), full_page=True)
        finally:
            browser.close()
    assert refused == [] and errors == []
    assert drawn == 7
    assert heatmaps >= 4 and curves >= 2


# -- regimes ---------------------------------------------------------------------------------------

def test_each_profile_names_its_mode_and_shows_its_regimes_numbers():
    from tests.regime_runs import save_regime_runs

    store = RunStore()
    ids = save_regime_runs(store)
    text = html_report([store.get(ids[name]) for name in ("old", "train", "decode")])
    # the run saved before the regimes is a forward call, and says so
    assert f"#{ids['old']} · profile · sdpa · forward" in text
    assert "forward: one call over the whole sequence" in text
    train = text[text.index(f'id="run-{ids["train"]}"'):text.index(f'id="run-{ids["decode"]}"')]
    assert "#2 · profile · sdpa · train" in train
    for words in ("forward (median)</th><td>1 ms", "backward (median)</th><td>2 ms",
                  "saved for the backward</th><td>8.5 KiB", "grad error (largest of dq, dk, dv)</th><td>2.50e-07",
                  "step (median)</th><td>3 ms", "forward and backward medians added"):
        assert words in train, words
    assert "training-step FLOPs (forward + backward) across lengths" in train
    decode = text[text.index(f'id="run-{ids["decode"]}"'):]
    for words in ("per token (step ÷ new tokens)</th><td>50 µs", "bytes read per step</th><td>128 KiB",
                  "bandwidth floor (bytes read ÷ copy bandwidth)</th><td>10 µs",
                  "floor ÷ step (100% = at the floor)</th><td>20.0%", "context (cached keys)</th><td>256",
                  "achieved bandwidth (bytes read ÷ step)</th><td>2.62 GB/s"):
        assert words in decode, words
    assert "bytes a decode step reads across context" in decode
    assert "forward (median)" not in decode and "per token" not in train


def test_a_decode_sweep_lists_its_regimes_numbers_per_point():
    spec = SPEC.with_(seq=1, kv_seq=64, causal_align="bottom_right")
    points = [{"variant": "sdpa", "x": x, "status": "ok", "mode": "decode", "latency_ms": x / 1000,
               "per_token_ms": x / 1000, "bytes_read": 2 * 2 * x * 16 * 4, "floor_ms": x / 4000,
               "achieved_gbps": 1.0, "peak_bytes": 1000, "flops": 4 * 2 * 16 * x,
               "spec": spec.with_(kv_seq=x).to_dict()} for x in (64, 128, 256)]
    results = {"axis": "context", "xs": [64, 128, 256], "variants": ["sdpa"], "device": "cpu", "mode": "decode",
               "points": points, "fits": {}, "crossovers": [], "walls": [], "spec": spec.to_dict()}
    store = RunStore()
    text = html_report([store.get(store.save("sweep", spec, results, variant="sdpa", environment=CPU))])
    assert "#1 · sweep · sdpa · decode" in text
    assert "Points (decode: median of one decode step)" in text
    assert "<th>per token (step ÷ new tokens)</th>" in text and "<th>context</th>" in text
    assert "<td>25.0%</td>" in text  # floor ÷ step at every point
    assert "context (cached keys)" in text  # the curves' axis
    assert "<th>grad error" not in text
