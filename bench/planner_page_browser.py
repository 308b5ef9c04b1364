"""Seconds until the Planner page is drawn in Chromium, with MiniLM already loaded in the server:

- a new tab opens the page (the form, before any plan is evaluated);
- Evaluate on MiniLM at 128 tokens without timing: the job in the worker (cost, the quality of
  36 sentences and 16 passages against the base, the maps before and after) until the cards show.

    python -m bench.planner_page_browser [--loads N]     (needs Debian's chromium)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench.app_cpu import _free_port
from bench.models_page_browser import ROOT, _summary

PLAN = "0-4:sliding_window:16"
QUIET_S = 3


def _until(page, selector: str, t0: float, limit_s: float = 180) -> float:
    page.wait_for_selector(selector, timeout=limit_s * 1000)
    return time.perf_counter() - t0


def main(loads: int = 5) -> None:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT,
                            env={**os.environ, "ATTN_HOME": tempfile.mkdtemp()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/planner?model=minilm&plan={PLAN}&tokens=128"
    form = ".st-key-pl_go button"
    cards = "text=mean cosine to the base"
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
            context = browser.new_context(viewport={"width": 1500, "height": 1100})
            page = context.new_page()  # loads MiniLM in the server and warms it; not counted
            page.goto(url)
            page.wait_for_selector(form, timeout=180_000)
            page.locator(form).click()
            page.wait_for_selector(cards, timeout=180_000)
            page.close()
            opened, evaluated = [], []
            for _ in range(loads):
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(url)
                opened.append(_until(page, form, t0))
                time.sleep(QUIET_S)
                page.locator(".st-key-pl_measure label").click()  # timing off: cost and quality
                time.sleep(QUIET_S)
                t0 = time.perf_counter()
                page.locator(form).click()
                evaluated.append(_until(page, cards, t0))
                time.sleep(QUIET_S)
                page.close()
            _summary("new tab, the page's form drawn", opened)
            _summary("Evaluate (the job in the worker) until the cards show", evaluated)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    main(parser.parse_args().loads)
