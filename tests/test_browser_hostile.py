"""Hostile links in Chromium (issue 16): the page is drawn, says in a warning what it did not take
from the link, and shows the script tag of a link as text. Screenshots: test-artifacts/hostile-*.png."""
from __future__ import annotations

import pytest

from tests.test_browser import _no_exception, _open, _shot, app_url, browser, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCRIPT = "%3Cscript%3Ealert(1)%3C%2Fscript%3E"


@pytest.mark.parametrize("name, link, words", [
    ("playground", "playground?seq=abc&heads=-5&head=-3&cells=7&variants=nope,sdpa&mode=decode"
                   "&context=1000000000000000000000000000000",
     ["seq 'abc' from the link", "heads -5 from the link is outside", "nope", "Draw the maps"]),
    ("economics", "economics?gpu_price=-1&cpu_price=nan&layers=0&context=-1",
     ["gpu_price -1.0 from the link is outside", "cpu_price 'nan' from the link"]),
    ("planner", f"planner?plan={SCRIPT}&kv_heads=99999&activation=bogus",
     ["kv_heads 99,999 from the link is outside", "activation 'bogus' from the link"]),
])
def test_a_hostile_link_is_drawn_with_its_warnings(page, app_url, name, link, words):  # noqa: F811
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _open(page, f"{app_url}/{link}")
    _no_exception(page)
    body = page.inner_text("body")
    for word in words:
        assert word in body, body[:3000]
    assert dialogs == [], "a script from the link ran"
    _shot(page, f"hostile-{name}")
