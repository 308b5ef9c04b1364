"""The story in Chromium: presenter mode walked chapter by chapter at the real sizes (a screenshot
of each in test-artifacts/story-N.png), the whole story on one page, and the downloaded HTML
opened with the network cut off. Needs Debian's chromium."""
from __future__ import annotations

import time

import pytest

from attn import story
from tests.test_browser import ARTIFACTS, _no_exception, _open, _settle, _shot, app_url, browser, page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FIGURE = ".st-key-story_fig_{n} .js-plotly-plot .main-svg"


def test_presenter_walks_the_story(page, app_url):  # noqa: F811 (fixture)
    page.set_default_timeout(120_000)  # a click or the download's 4.9 MB, on a shared 2-core machine
    _open(page, f"{app_url}/story?present=1")
    for ch in story.CHAPTERS:
        page.wait_for_selector(FIGURE.format(n=ch.number), timeout=300_000)
        _settle(page, 300)
        _no_exception(page)
        text = page.inner_text("body")
        assert f"{ch.number}. {ch.title}" in text
        assert page.locator('[data-testid="stSidebar"]').is_hidden()  # full width
        _shot(page, f"story-{ch.number}")
        if ch.number < len(story.CHAPTERS):
            page.locator(".st-key-story_next button").click()
            time.sleep(0.5)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the story").first.click()
    path = ARTIFACTS / "story.html"
    download.value.save_as(path)
    html = path.read_text()
    assert '<script src="http' not in html and "6. The bill" in html


def test_the_exported_story_opens_with_no_network(browser):  # noqa: F811 (fixture)
    path = ARTIFACTS / "story.html"
    if not path.exists():
        pytest.skip("needs the download of test_presenter_walks_the_story")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    asked = []
    context.route("**/*", lambda route: (asked.append(route.request.url), route.abort())
                  if route.request.url.startswith("http") else route.continue_())
    pg = context.new_page()
    pg.goto(path.as_uri())
    pg.wait_for_selector("#chapter-6 .js-plotly-plot .main-svg", timeout=60_000)
    assert asked == []
    assert pg.locator(".js-plotly-plot").count() == len(story.CHAPTERS)
    _shot(pg, "story-report")
    context.close()


def test_the_whole_story_on_one_page(page, app_url):  # noqa: F811 (fixture)
    _open(page, f"{app_url}/story")
    page.wait_for_selector(FIGURE.format(n=len(story.CHAPTERS)), timeout=300_000)
    _settle(page, 300)
    _no_exception(page)
    _shot(page, "story-page")


def test_the_playground_keeps_its_figures_dimmed_while_profiling(page, app_url):  # noqa: F811 (fixture)
    _open(page, f"{app_url}/playground?variants=sdpa,dense&seq=2048")  # seconds of profiling to look at
    page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=60_000)
    page.get_by_role("button", name="Profile").click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
    dimmed = page.locator(".st-key-dimmed_pg_results")
    dimmed.wait_for(timeout=30_000)
    deadline = time.time() + 30
    while float(dimmed.evaluate("e => getComputedStyle(e).opacity")) > 0.5 and time.time() < deadline:
        time.sleep(0.1)
    assert float(dimmed.evaluate("e => getComputedStyle(e).opacity")) < 0.5  # dimmed, not gone
    assert dimmed.locator(".js-plotly-plot .heatmaplayer").count() >= 2  # the maps stay
    _shot(page, "playground-dimmed")
    page.get_by_text("latency (median)").first.wait_for(timeout=180_000)
    _settle(page)
    assert float(dimmed.evaluate("e => getComputedStyle(e).opacity")) == 1.0  # new cards, full colour
    _no_exception(page)


def test_the_monitor_marks_jobs_close_together_readably(page, app_url):  # noqa: F811 (fixture)
    # runs after the Playground's two profiles above, seconds apart, within the monitor's window
    _open(page, f"{app_url}/monitor")
    page.wait_for_selector(".js-plotly-plot .annotation-text", timeout=60_000)
    marks = page.locator(".js-plotly-plot .annotation-text").evaluate_all("els => els.map(e => e.textContent)")
    assert {"▶", "■"} & set(marks)  # one symbol a mark; the job's name is in its hover
    _no_exception(page)
    _shot(page, "monitor-jobs")
