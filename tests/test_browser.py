"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the app as
`make run` starts it (`python -m ui.serve`), on a free localhost port. Screenshots go to test-artifacts/."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with served({**os.environ, "ATTN_HOME": str(tmp_path_factory.mktemp("browser_home"))}) as url:
        yield url


@contextlib.contextmanager
def served(env: dict[str, str]):
    """The app as `make run` starts it, with this environment, on a free port: its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.serve", "--server.port", str(port),  # as `make run` starts it
         "--server.headless", "true", "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + proc.stdout.read().decode()[-2000:])
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = context.new_page()
    yield pg
    context.close()


def _open(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stApp"] h1', timeout=60_000)
    _settle(page)


def _settle(page, timeout_s: float = 120) -> None:
    """Wait until the script has finished running: no 'running' status widget and no skeleton
    placeholders, twice in a row (a page can rerun once after its first run)."""
    time.sleep(0.5)
    deadline = time.time() + timeout_s
    quiet = 0
    while time.time() < deadline:
        busy = (page.locator('[data-testid="stStatusWidget"]').count()
                + page.locator('[data-testid="stSkeleton"]').count())
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 2:
            return
        time.sleep(0.3)
    raise AssertionError("the page kept running")


def _wait_count(page, selector: str, n: int, timeout_s: float = 60) -> int:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        count = page.locator(selector).count()
        if count >= n:
            return count
        time.sleep(0.25)
    return page.locator(selector).count()


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.parametrize("path", ["", "playground", "scaling", "roofline", "monitor", "compare", "runs", "economics", "models", "planner"])
def test_every_page_opens_without_an_exception(page, app_url, path):
    _open(page, f"{app_url}/{path}")
    _no_exception(page)
    assert page.locator("h1").count() >= 1
    _shot(page, f"page-{path or 'overview'}")


def test_playground_draws_a_big_specs_maps_in_the_worker_and_cancel_stops_them(page, app_url):
    # 8 x 4100 x 4100 weights: past what the page draws at once, a few seconds in the worker
    _open(page, f"{app_url}/playground?variants=linear&seq=4100&head_dim=16")
    page.get_by_text("press Draw the maps").first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot .heatmaplayer").count() == 0
    _shot(page, "playground-big-maps-asked")
    page.get_by_role("button", name="Draw the maps").click()
    page.get_by_role("button", name="Cancel").wait_for(timeout=60_000)  # the bar, the page's run over
    _shot(page, "playground-big-maps-drawing")
    _wait_count(page, ".js-plotly-plot .heatmaplayer", 2, timeout_s=180)  # the fragment redraws the page
    assert page.locator(".js-plotly-plot .heatmaplayer").count() >= 2, "the map and the mask"
    assert page.get_by_role("button", name="Cancel").count() == 0
    _no_exception(page)
    # 2^30 weights, minutes of work: Cancel stops it, and the page says so in the variant's column
    _open(page, f"{app_url}/playground?variants=dense&seq=32768&heads=1&kv_heads=1&head_dim=8")
    page.get_by_role("button", name="Draw the maps").click()
    page.get_by_role("button", name="Cancel").click(timeout=60_000)
    page.get_by_text("The maps of dense: cancelled").wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page)
    _shot(page, "playground-big-maps-cancelled")
    assert page.get_by_role("button", name="Cancel").count() == 0


def test_playground_profiles_and_draws_a_heatmap(page, app_url):
    _open(page, f"{app_url}/playground?variants=sdpa,sliding_window&seq=256&window=64")
    page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=60_000)
    page.get_by_role("button", name="Profile").click()
    page.get_by_text("latency (median)").first.wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    assert _wait_count(page, ".js-plotly-plot .heatmaplayer", 2) >= 2  # one map per variant
    assert _wait_count(page, ".js-plotly-plot .scatterlayer .trace", 2) >= 2  # the small curves
    shot = _shot(page, "playground")
    if os.environ.get("ATTN_UPDATE_DOCS_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "playground.png")
    # decode: the sidebar asks for the step, the cards and the maps become the step's
    page.locator('[data-testid="stRadio"]').filter(has_text="regime").get_by_text("decode", exact=True).click()
    page.get_by_text("context (cached keys)").first.wait_for(timeout=60_000)
    page.get_by_text("bytes read").first.wait_for(timeout=60_000)
    _settle(page)
    page.get_by_role("button", name="Profile").click()
    page.get_by_text("% of floor speed").first.wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    assert "mode=decode" in page.url
    assert _wait_count(page, ".js-plotly-plot .heatmaplayer", 2) >= 2  # a strip per variant
    _shot(page, "playground-decode")
    page.locator(".js-plotly-plot .heatmaplayer").first.scroll_into_view_if_needed()
    _shot(page, "playground-decode-maps")  # the page scrolls inside Streamlit's main block


def _run_sweep(page, url: str) -> None:
    """Open the Scaling page at `url`, run its sweep and wait for the end (the memory wall line)."""
    _open(page, url)
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text("Memory wall").first.wait_for(timeout=180_000)
    _settle(page)
    _no_exception(page)


def test_a_short_sweep_draws_curves_point_by_point(page, app_url):
    _run_sweep(page, f"{app_url}/scaling?variants=sdpa,linear&lo=6&hi=8")
    assert _wait_count(page, ".js-plotly-plot .scatterlayer .trace", 2) >= 2
    _shot(page, "scaling")


def test_a_decode_sweep_draws_latency_over_context_beside_the_bandwidth_floor(page, app_url):
    _run_sweep(page, f"{app_url}/scaling?mode=decode&variants=sdpa,sliding_window&lo=8&hi=11&window=256")
    assert page.locator(".js-plotly-plot .legendtext", has_text="floor").count() >= 2
    _shot(page, "scaling-decode")


def test_a_bad_spec_shows_an_error_not_a_traceback(page, app_url):
    _open(page, f"{app_url}/playground?heads=12&kv_heads=5")
    _no_exception(page)
    assert page.get_by_text("must be a multiple of kv_heads").count() >= 1
