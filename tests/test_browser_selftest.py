"""The Overview page's Self-test section in a real browser: the quick self-test runs in the worker
with its progress bar, then the table of checks is drawn. Screenshot: test-artifacts/."""
from __future__ import annotations

import time

import pytest

from tests.test_browser import _no_exception, _open, _settle, _shot, app_url, browser, page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_overview_runs_the_quick_selftest_and_draws_its_table(page, app_url):  # noqa: F811
    _open(page, app_url)
    page.get_by_text("Run the self-test").click()
    deadline = time.time() + 300
    while time.time() < deadline and page.get_by_text("not possible here,").count() == 0:
        time.sleep(1)
    _settle(page)
    _no_exception(page)
    body = page.inner_text("body")
    assert "passed" in body and "not possible here" in body
    page.get_by_text("Self-test", exact=True).scroll_into_view_if_needed()
    _shot(page, "overview-selftest")
