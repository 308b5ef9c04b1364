"""Another machine's ledger uploaded on the Runs page, then its device beside this one's on Compare
and Economics, in Chromium. Screenshots go to test-artifacts/devices-*.png."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.test_browser import ROOT, _no_exception, _open, _settle, _shot, browser, page, served  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SEED = """
from attn.runs import RunStore
from tests.test_device_compare import save
from tests.test_runs_import import ledger
from tests.test_runs_pages import CPU, GPU
store = RunStore()
save(store, CPU, 0.2)
save(store, CPU, 0.3, variant="linear")
ledger(__import__("pathlib").Path({ledger_path!r}), GPU)
"""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    home = tmp_path_factory.mktemp("devices_home")
    ledger_path = tmp_path_factory.mktemp("other_machine") / "h100-box.sqlite"
    env = {**os.environ, "ATTN_HOME": str(home)}
    subprocess.run([sys.executable, "-c", SEED.format(ledger_path=str(ledger_path))], cwd=ROOT, env=env, check=True)
    with served(env) as url:
        yield url, ledger_path


def test_an_uploaded_ledger_puts_its_device_beside_this_one(page, seeded):  # noqa: F811 (fixture)
    url, ledger_path = seeded
    _open(page, f"{url}/runs")
    page.get_by_text("Import another machine's runs").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(ledger_path))
    page.get_by_role("button", name="Import").wait_for(timeout=30_000)
    page.get_by_role("button", name="Import").click()
    page.get_by_text("2 run(s) added").wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page)
    assert "h100-box" in page.inner_text("body")
    _shot(page, "devices-runs")

    _open(page, f"{url}/compare?by=devices")
    _no_exception(page)
    text = page.inner_text("body")
    assert "NVIDIA H100 80GB HBM3 (h100-box)" in text and "Test CPU (2 cores)" in text
    assert page.locator(".js-plotly-plot").count() >= 3
    _shot(page, "devices-compare")

    _open(page, f"{url}/economics")
    _no_exception(page)
    heading = page.get_by_text("Devices side by side", exact=True).first
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")
    time.sleep(0.5)
    page.screenshot(path=str(ROOT / "test-artifacts" / "devices-economics.png"))
