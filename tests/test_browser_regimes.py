"""Runs, Compare, Economics and the HTML report in Chromium with saved runs of every regime (and
one saved before the regimes). Screenshots go to test-artifacts/regimes-*.png."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.test_browser import ROOT, _no_exception, _open, _shot, browser, page, served  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def seeded_url(tmp_path_factory):
    home = tmp_path_factory.mktemp("regimes_home")
    env = {**os.environ, "ATTN_HOME": str(home)}
    seed = "from tests.regime_runs import save_regime_runs; save_regime_runs()"
    subprocess.run([sys.executable, "-c", seed], cwd=ROOT, env=env, check=True)
    with served(env) as url:
        yield url, home


@pytest.mark.parametrize("path, words", [
    ("runs", ["decode", "train", "forward"]),
    ("compare?runs=1,2,3,4", ["different regimes", "a ratio is given only against the first run"]),
    ("economics", ["Decode: per generated token", "bandwidth floor", "Training: per training token"]),
])
def test_regime_pages_draw_with_runs_of_every_mode(page, seeded_url, path, words):  # noqa: F811 (fixture)
    url, _ = seeded_url
    _open(page, f"{url}/{path}")
    _no_exception(page)
    text = page.inner_text("body")
    for w in words:
        assert w in text, w
    _shot(page, "regimes-" + path.split("?")[0])
    for heading in ("Training: per training token", "Decode: per generated token", "Maps (head 0)"):
        if heading in text:  # the sections below the first screen, each at the top of one
            page.get_by_text(heading, exact=True).first.scroll_into_view_if_needed()
            page.get_by_text(heading, exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
            time.sleep(0.5)
            page.screenshot(path=str(ROOT / "test-artifacts" / f"regimes-{heading.split(':')[0].split()[0].lower()}.png"))


def test_the_report_of_every_mode_draws_in_chromium(page, seeded_url, tmp_path):  # noqa: F811 (fixture)
    _, home = seeded_url
    out = tmp_path / "report.html"
    env = {**os.environ, "ATTN_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "attn", "runs", "export", "1", "2", "3", "--format", "html",
                    "--out", str(out)], cwd=ROOT, env=env, check=True)
    page.goto(out.as_uri())
    page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
    assert page.locator(".plotly-graph-div").count() == 6  # a map and a cost curve per run
    _shot(page, "regimes-report")
