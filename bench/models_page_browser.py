"""Seconds from opening the Models page (MiniLM cached in the server after the first load) to its
six heatmaps and the cost bars drawn in Chromium.

    python -m bench.models_page_browser     (needs Debian's chromium)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.app_cpu import _free_port

ROOT = Path(__file__).resolve().parent.parent


def main(loads: int = 4) -> None:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT,
                            env={**os.environ, "ATTN_HOME": tempfile.mkdtemp()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            for i in range(loads):
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/models?tokens=128")
                page.wait_for_selector('[data-testid="stApp"] h1', timeout=60_000)
                while (page.locator(".js-plotly-plot .heatmaplayer").count() < 6
                       or page.locator(".js-plotly-plot .barlayer").count() < 1):
                    if time.perf_counter() - t0 > 120:
                        raise SystemExit("the Models page did not draw in 120 s")
                    time.sleep(0.05)
                print(f"load {i + 1}: maps and cost bars drawn in {time.perf_counter() - t0:.2f} s")
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
