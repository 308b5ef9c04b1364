"""The Planner page under AppTest: a plan on MiniLM shows its cards, maps and a frontier point; a
bad plan one error line; a preset its cost only. Timing is off in these (the CLI tests time)."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_app

pytestmark = pytest.mark.usefixtures("in_process_jobs")
PAGE = "views/planner.py"


def evaluate(at: AppTest, plan: str | None = None) -> AppTest:
    if plan is not None:
        at.text_input(key="pl_plan").set_value(plan)
    at.toggle(key="pl_measure").set_value(False)
    return at.button(key="pl_go").click().run(timeout=300)


def test_the_page_opens_with_the_plan_from_the_url_and_nothing_evaluated():
    at = open_app(PAGE, plan="0-2:sliding_window:16", kv_heads="3", activation="sigmoid")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.text_input(key="pl_plan").value == "0-2:sliding_window:16"
    assert at.number_input(key="pl_kv").value == 3 and at.selectbox(key="pl_act").value == "sigmoid"
    assert any("No plan evaluated yet" in i.value for i in at.info)
    at = open_app(PAGE, kv_heads="999", tokens="100000", activation="tanh")
    assert not at.exception, at.exception
    assert (at.number_input(key="pl_kv").value, at.number_input(key="pl_tokens").value) == (128, 512)
    assert at.selectbox(key="pl_act").value == "as planned"


@pytest.mark.slow
def test_a_plan_on_minilm_shows_its_cards_maps_table_and_a_frontier_point():
    at = evaluate(open_app(PAGE, tokens="32"), "0-4:sliding_window:8,5:sdpa")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    cards = {m.label: m.value for m in at.metric}
    assert cards["attention FLOPs saved, % of base"].endswith("%") and cards["prefill, plan / base"] == "not timed"
    assert 0.0 < float(cards["mean cosine to the base"]) < 1.0
    assert set(at.dataframe[0].value["plan"]) == {"minilm: 0-4:sliding_window:8,5:full"}
    assert at.dataframe[0].value["run"][0] == "#1", "saved to the run store"
    charts = at.get("plotly_chart")
    assert len(charts) == 3, "two maps and the frontier"
    assert at.query_params["plan"] in ("0-4:sliding_window:8,5:sdpa", ["0-4:sliding_window:8,5:sdpa"])


@pytest.mark.slow
def test_a_bad_plan_says_what_to_change_in_one_line_and_the_page_keeps_working():
    at = evaluate(open_app(PAGE, tokens="16"), "9:sliding_window:8")
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Evaluating the plan: layer 9 is out of range: the model has layers 0-5"]
    at = evaluate(at, "all:sliding_window:0")
    assert len(at.error) == 1 and "window" in at.error[0].value
    at = evaluate(at, "0:full:tanh")
    assert len(at.error) == 1 and "tanh" in at.error[0].value
    at.number_input(key="pl_kv").set_value(5)
    at = evaluate(at, "all:full")
    assert len(at.error) == 1 and "5" in at.error[0].value
    at.number_input(key="pl_kv").set_value(0)
    at = evaluate(at, "all:full")
    assert not at.error and at.dataframe[0].value["plan"][0] == "minilm: 0-5:full"


@pytest.mark.slow
def test_a_preset_says_random_weights_cost_only_and_draws_no_frontier():
    at = open_app(PAGE, model="llama-gqa", tokens="16")
    at = evaluate(at, "all:sliding_window:4")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Cost only: presets have random weights" in i.value for i in at.info)
    assert "mean cosine to the base" not in {m.label for m in at.metric}
    assert any("No frontier for llama-gqa" in c.value for c in at.caption)


@pytest.mark.slow
def test_a_missing_local_directory_is_one_error_line(tmp_path):
    at = open_app(PAGE, model=str(tmp_path / "nowhere"), tokens="16")
    assert at.selectbox(key="pl_model").value == "local directory…"
    at = evaluate(at)
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "nowhere" in at.error[0].value


@pytest.mark.slow
def test_a_hostile_config_is_one_error_line(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 10**12,
                                                      "num_attention_heads": 2, "num_hidden_layers": 1}))
    (tmp_path / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    at = evaluate(open_app(PAGE, model=str(tmp_path), tokens="16"))
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "hidden_size is 1000000000000; allowed" in at.error[0].value


# -- the browser ---------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_browser_evaluates_a_plan_and_draws_the_maps_and_the_frontier(page, app_url):  # noqa: F811 (fixtures)
    from tests.test_browser import _no_exception, _open, _settle, _shot, _wait_count

    _open(page, f"{app_url}/planner?plan=0-4:sliding_window:8,5:sdpa&tokens=64")
    _no_exception(page)
    page.get_by_role("button", name="Evaluate").click()
    page.wait_for_selector("text=mean cosine to the base", timeout=240_000)
    _settle(page)
    _no_exception(page)
    assert _wait_count(page, ".js-plotly-plot", 3) >= 3, "two maps and the frontier"
    text = page.inner_text("body")
    for words in ("attention FLOPs saved", "prefill, plan / base", "Plans compared", "saved as run #1"):
        assert words in text, words
    _shot(page, "planner")
    page.get_by_text("Plans compared").scroll_into_view_if_needed()
    page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
    _shot(page, "planner-frontier")


# the browser fixtures, shared with the other browser tests
from tests.test_browser import app_url, browser, page  # noqa: E402,F401

