"""The Models page under AppTest (MiniLM, a preset, a missing directory), `python -m attn model`,
and the page in a real browser: the model view is drawn and clicking a grid opens that head."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_app

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("in_process_jobs")
PAGE = "views/models.py"


def open_models(**params) -> AppTest:
    return open_app(PAGE, **params)


@pytest.mark.slow
def test_default_run_draws_minilm_without_errors():
    at = open_models()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value.endswith("Models")
    headers = [h.value for h in at.subheader]
    for wanted in ("Model view", "Head view and rollout", "Head statistics", "Cost per layer", "Measured"):
        assert wanted in headers
    assert any("Convention: matmul FLOPs" in c.value for c in at.caption)
    assert any(m.label == "peak memory" for m in at.metric), "module timing ran through the job runner"


@pytest.mark.slow
def test_a_second_visit_shows_the_timing_measured_on_the_first(in_process_jobs):
    text = "Measured once, shown to every visit that asks the same question."
    open_models(text=text)
    timed = [h for h in in_process_jobs.jobs() if h.title == "time per module"]
    assert len(timed) == 1
    again = open_models(text=text)  # a reload: another session
    assert any(m.label == "peak memory" for m in again.metric)
    assert len([h for h in in_process_jobs.jobs() if h.title == "time per module"]) == 1, \
        "no second measurement while the page draws"
    again.button(key="md_time_again").click().run()
    assert len([h for h in in_process_jobs.jobs() if h.title == "time per module"]) == 2, \
        "measure again measures again"


@pytest.mark.slow
def test_a_link_opens_its_head():
    at = open_models(text="The cat sat on the mat.", layer="2", head="5")
    assert not at.exception, at.exception
    assert (at.selectbox(key="md_layer").value, at.selectbox(key="md_head").value) == (2, 5)
    assert (at.query_params["layer"], at.query_params["head"]) == ("2", "5"), "and keeps it in the URL"


@pytest.mark.slow
def test_changing_the_text_the_head_and_the_model_reruns_cleanly():
    at = open_models(text="The cat sat on the mat.")
    at.text_area(key="md_text").set_value("A different sentence, with other words in it.").run()
    assert not at.exception and not at.error
    at.selectbox(key="md_layer").set_value(3).run()
    at.selectbox(key="md_head").set_value(7).run()
    assert not at.exception
    assert (at.query_params["layer"], at.query_params["head"]) == ("3", "7"), "the open head is in the URL"
    at.selectbox(key="md_model").set_value("mistral-swa").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    # a 4-layer model: the open layer 3 is still in range, the KV-cache chart replaces the note
    assert any("window" in c.value for c in at.caption)


@pytest.mark.slow
def test_a_long_text_is_pooled_from_q_and_k():
    at = open_models(text=" ".join(["attention is all the cost"] * 80), tokens="300")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("q and k captured with hooks" in c.value for c in at.caption)


def _figure_titles(at: AppTest) -> list[str]:
    return [json.loads(chart.proto.spec).get("layout", {}).get("title", {}).get("text", "")
            for chart in at.get("plotly_chart")]


def _jobs(runner, title: str) -> list:
    return [h for h in runner.jobs() if h.title == title]


@pytest.mark.slow
def test_an_encoder_says_why_it_has_no_decode_curve_and_measures_its_train_step(in_process_jobs):
    at = open_models(text="A short text for an encoder.")
    assert "Serving and training" in [h.value for h in at.subheader]
    assert any("no decode step to time" in i.value for i in at.info), "the reason, in words"
    assert "md_serve" not in [b.key for b in at.button], "nothing to measure: no button"
    at.selectbox(key="md_train_max").set_value(256).run()
    at.button(key="md_train").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(_jobs(in_process_jobs, "attention layers' train step")) == 1
    assert any("training step of its 6 attention layers" in t for t in _figure_titles(at))
    assert any("Convention: batch 1" in c.value and "no optimizer step" in c.value for c in at.caption)
    at.text_area(key="md_text").set_value("Another text: the result stays for the session.").run()
    assert any("training step of its 6 attention layers" in t for t in _figure_titles(at))
    assert len(_jobs(in_process_jobs, "attention layers' train step")) == 1, "kept, not measured again"


@pytest.mark.slow
def test_a_decoder_shows_ttft_decode_and_its_measured_cache(in_process_jobs):
    at = open_models(model="llama-gqa", text="A decoder, served token by token.")
    assert not [i for i in at.info if "no decode step" in i.value]
    at.selectbox(key="md_serve_max").set_value(256).run()
    at.button(key="md_serve").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    (job,) = _jobs(in_process_jobs, "time to first token · decode")
    points = job.result(0)["points"]
    assert [p["context"] for p in points] == [128, 256] and all(p["status"] == "ok" for p in points)
    assert all(p["cache_bytes"] == p["cache_bytes_predicted"] for p in points), "GQA: 2 K/V heads, as predicted"
    titles = _figure_titles(at)
    assert any("TTFT and decode per token" in t for t in titles)
    assert any("KV cache after the prefill" in t for t in titles)
    assert any("Cache: measured" in c.value and "at context 256" in c.value for c in at.caption)
    at.selectbox(key="md_train_max").set_value(128).run()
    at.button(key="md_train").click().run()
    assert not at.exception and not at.error
    assert any("training step of its 4 attention layers" in t for t in _figure_titles(at))
    at.button(key="md_save").click().run()
    from attn.runs import RunStore

    run = RunStore().get(RunStore().list(kind="model")[0].id)
    assert run.results["serving"]["points"] and run.results["train_step"]["points"], "saved with the run"


def _broken_directory(tmp_path: Path, what: str) -> str:
    if what == "missing":
        return str(tmp_path / "no-such-model")
    if what != "empty":
        layers = 10**9 if what == "hostile" else 1
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 64,
                                                          "num_attention_heads": 2, "num_hidden_layers": layers}))
        (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    return str(tmp_path)


@pytest.mark.parametrize("what, message", [
    ("missing", "does not exist"),
    ("empty", "has no config.json"),
    ("corrupt", "not a readable safetensors file"),
    ("hostile", "num_hidden_layers is 1000000000; allowed: a whole number from 1 to 1,024"),
])
def test_a_bad_directory_shows_an_error_not_an_exception(tmp_path, what, message):
    at = open_models(model=_broken_directory(tmp_path, what))
    assert not at.exception, at.exception
    assert at.selectbox(key="md_model").value == "local directory…"
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert "Model view" not in [h.value for h in at.subheader], "nothing drawn without a model"


def test_local_directory_asks_for_a_path_first():
    at = open_models(model="/tmp/../" + "x" * 8)
    at.text_input(key="md_dir").set_value("").run()
    assert not at.exception and not at.error
    assert any("Name a local model directory" in i.value for i in at.info)


@pytest.mark.slow
def test_after_a_bad_directory_the_page_keeps_working(tmp_path):
    at = open_models(model=_broken_directory(tmp_path, "missing"))
    assert at.error
    at.selectbox(key="md_model").set_value("minilm").run()
    assert not at.exception and not at.error
    assert "Model view" in [h.value for h in at.subheader]


@pytest.mark.slow
def test_an_empty_text_says_so():
    at = open_models()
    at.text_area(key="md_text").set_value("   ").run()
    assert not at.exception
    assert any("text is empty" in e.value for e in at.error)


# -- page helpers -----------------------------------------------------------------------------
def test_page_pooling_matches_attn_maps():
    """The model view pools transformers' weights in numpy exactly as attn.maps pools q, k."""
    from attn import variants
    from attn.inputs import random_qkv
    from attn.maps import pooled_map
    from attn.spec import AttentionSpec
    from ui.models import _pooled

    spec = AttentionSpec(seq=100, heads=2, head_dim=16, causal=True)
    q, k, _ = random_qkv(spec)
    weights = variants.get("dense").weights(q, k, spec, None)[0].numpy()  # (H, S, S)
    pooled, edges = _pooled(weights, 64)  # 100 keys in 64 unequal runs
    for head in range(2):
        ref = pooled_map(q, k, spec, "dense", 0, head, 64)
        np.testing.assert_array_equal(edges, ref.q_edges)
        np.testing.assert_allclose(pooled[head], ref.values, atol=1e-6)
    np.testing.assert_allclose(pooled.sum(-1), 1.0, atol=1e-5)


def test_token_labels_stay_unique():
    from ui.models import token_labels

    labels = token_labels(["[CLS]", "the", "cat", "the", "[SEP]"])
    assert len(set(labels)) == 5 and labels[3] == "3 the"


# -- the command line ----------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attn", "model", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_model_json_keys():
    out = _cli("--model", "minilm", "--text", "hello world", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"model", "text", "tokens", "seq_len", "costs", "kv_cache", "timing", "maps"} <= set(data)
    assert data["tokens"] == ["[CLS]", "hello", "world", "[SEP]"]
    assert data["maps"]["shape"] == [6, 12, 4, 4]
    assert data["costs"]["convention"].startswith("matmul FLOPs")
    assert len(data["costs"]["layers"]) == 6


def test_cli_missing_directory_exits_2_with_one_line(tmp_path):
    out = _cli("--model", str(tmp_path / "nothing"), "--text", "hello")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0], out.stderr


# -- the browser ---------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_browser_draws_the_model_view_and_a_click_opens_a_head(page, app_url):  # noqa: F811 (fixtures, imported below)
    from tests.test_browser import _no_exception, _open, _settle, _shot, _wait_count

    _open(page, f"{app_url}/models?text=The%20animal%20didn%27t%20cross%20the%20street%20because%20it%20was%20tired.")
    page.locator(".st-key-md_mosaic .imagelayer image").wait_for(timeout=180_000)
    _no_exception(page)
    # the mosaic is one image; the head view, the rollout and the statistics' grids are heatmaps
    assert _wait_count(page, ".js-plotly-plot .heatmaplayer", 5) >= 5
    assert page.locator(".st-key-md_grids .heatmaplayer").count() == 3, "a grid per statistic"
    assert page.locator(".st-key-md_costs .barlayer").count() == 1
    # every figure fits the margins it asked for: none was drawn a second time to grow one
    grown = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(gd => {
        const m = gd._fullLayout.margin, s = gd._fullLayout._size;
        return ['l', 'r', 't', 'b'].filter(k => s[k] > m[k]).map(k => `${gd.closest('[class*=st-key-md_]')
            .className.match(/st-key-(md_\\w+)/)[1]}.${k} ${m[k]} -> ${s[k]}`); })""")
    assert not grown, grown
    # a click on the map of layer 1, head 3 in the mosaic opens that head
    mosaic = page.locator(".st-key-md_mosaic .nsewdrag").first
    box = mosaic.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 3.45 / 12, box["y"] + box["height"] * 1.45 / 6)
    # the head view's title, not the hover label over the mosaic, which names the head too
    page.locator(".st-key-md_head_map .gtitle", has_text="layer 1 · head 3").wait_for(timeout=60_000)
    _settle(page)
    # clicking the cell of layer 2, head 5 in the entropy grid opens that head
    grid = page.locator(".st-key-md_grids .nsewdrag").first  # the entropy panel
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 5.5 / 12, box["y"] + box["height"] * 2.5 / 6)
    page.locator(".st-key-md_head_map .gtitle", has_text="layer 2 · head 5").wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page)
    _shot(page, "models")


@pytest.mark.browser
@pytest.mark.slow
def test_browser_measures_serving_and_the_train_step(page, app_url):  # noqa: F811 (fixtures, imported below)
    from tests.test_browser import _no_exception, _open, _settle, _shot

    _open(page, f"{app_url}/models?model=llama-gqa&text=Served%20token%20by%20token.")
    for key, value in (("md_serve_max", "256"), ("md_train_max", "256")):  # small: a quick test
        # below the model's maps and the timing, drawn last; not the copy a rerun is replacing
        box = page.locator(f".st-key-{key}:not([data-stale='true'])")
        box.wait_for(timeout=180_000)
        box.scroll_into_view_if_needed()
        box.locator("input").click()  # type the choice into the select's search field
        box.locator("input").fill(value)
        page.keyboard.press("Enter")
        _settle(page)
    for button, chart in (("md_serve", "md_serve_chart"), ("md_train", "md_train_chart")):
        page.locator(f".st-key-{button} button").first.click()
        page.locator(f".st-key-{chart} .scatterlayer").first.wait_for(timeout=180_000)
        _settle(page)
    _no_exception(page)
    assert page.locator(".st-key-md_serve_cache .scatterlayer .trace").count() >= 2, "measured and predicted"
    grown = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(gd => {
        const m = gd._fullLayout.margin, s = gd._fullLayout._size;
        return ['l', 'r', 't', 'b'].filter(k => s[k] > m[k]).map(k => `${k} ${m[k]} -> ${s[k]}`); })""")
    assert not grown, grown
    page.locator(".st-key-md_train_chart").scroll_into_view_if_needed()
    _shot(page, "models_serving")


# the browser fixtures, shared with the other browser tests
from tests.test_browser import app_url, browser, page  # noqa: E402,F401


@pytest.mark.slow
def test_a_model_run_can_be_saved_and_listed():
    from attn.runs import RunStore

    at = open_models()
    at.button(key="md_save").click().run()
    assert not at.exception
    assert any("Saved as run" in s.value for s in at.success)
    run = RunStore().get(RunStore().list(kind="model")[0].id)
    assert run.results["model"]["name"] and run.results["flops"] > 0
    assert run.maps["maps"].ndim == 4
