"""Seconds until the Models page shows MiniLM's 6 x 12 maps and its per-layer cost bars in
Chromium, on 128 tokens, with the model already loaded in the server:

- a new tab in a browser that has seen the app before (its scripts in the HTTP cache),
- a new tab in a browser that never has (every script downloaded, 4.7 MB of plotly among them),
- a new 128-token text typed into the page that is already open.

    python -m bench.models_page_browser [--loads N]     (needs Debian's chromium)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

from bench.app_cpu import _free_port

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 128
QUIET_S = 4  # seconds between two loads
# long enough for 128 MiniLM tokens (the default text has 33)
TEXT = ("The animal didn't cross the street because it was too tired. Attention lets every word "
        "look at every other word, and that is what it costs. ") * 5
# the mosaic (one image) and the analytic cost bars, both drawn at 128 tokens. Checked in the page
# every 25 ms, cheaply, and timed on the page's own clock, so the polling from Python (slow, four
# times a second) neither loads the renderer nor adds its latency to the figure.
WATCH = """(before) => {
  const drawn = () => {
    const image = document.querySelector('.st-key-md_mosaic .imagelayer image');
    const costs = document.querySelector('.st-key-md_costs .js-plotly-plot');
    if (!image || !costs || !costs.querySelector('.barlayer .point')) return null;
    const href = image.getAttribute('href') || image.getAttribute('xlink:href');
    const title = (costs.querySelector('.gtitle') || {}).textContent || '';
    return href !== before && title.includes('at TOKENS tokens') ? href : null;
  };
  window.__armed = performance.now();
  window.__drawnAt = null;
  const timer = setInterval(() => {
    const href = drawn();
    if (href) { window.__drawnAt = performance.now(); window.__href = href; clearInterval(timer); }
  }, 25);
}""".replace("TOKENS", str(TOKENS))


def _goto_drawn(page, url: str) -> float:
    """Seconds from the start of the navigation to the maps and the cost bars on screen."""
    page.add_init_script(f"({WATCH})(null)")
    page.goto(url)
    return _wait(page) / 1000


def _wait(page) -> float:
    t0 = time.perf_counter()
    while (at := page.evaluate("window.__drawnAt")) is None:
        if time.perf_counter() - t0 > 120:
            raise SystemExit("the Models page did not draw in 120 s")
        time.sleep(0.25)
    return at


def _summary(name: str, seconds: list[float]) -> None:
    print(f"{name}: median {statistics.median(seconds):.2f} s, range {min(seconds):.2f}-{max(seconds):.2f} s "
          f"over {len(seconds)} ({', '.join(f'{s:.2f}' for s in seconds)})")


@contextlib.contextmanager
def served_app() -> Iterator[str]:
    """The app started as `make run` does, on a free port with an empty ATTN_HOME: its address,
    once it answers; stopped afterwards."""
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
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def chromium(p):
    """Debian's headless chromium through Playwright (no browser download)."""
    return p.chromium.launch(executable_path=shutil.which("chromium"), args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def main(loads: int = 5) -> None:
    from playwright.sync_api import sync_playwright

    viewport = {"width": 1500, "height": 1100}
    with served_app() as address:
        url = f"{address}/models?tokens={TOKENS}&text={urllib.parse.quote(TEXT)}"
        with sync_playwright() as p:
            browser = chromium(p)
            seen = browser.new_context(viewport=viewport)
            page = seen.new_page()  # loads the model and measures it once; not counted
            _goto_drawn(page, url)
            time.sleep(3)
            page.close()

            # each kind of load in a block of its own, a few quiet seconds between two loads:
            # the page's later figures and a closed tab's teardown would otherwise fall into the
            # next load's time on 2 cores
            cached, fresh = [], []
            for _ in range(loads):
                page = seen.new_page()
                cached.append(_goto_drawn(page, url))
                time.sleep(QUIET_S)
                page.close()
            for _ in range(loads):
                context = browser.new_context(viewport=viewport)
                page = context.new_page()
                fresh.append(_goto_drawn(page, url))
                time.sleep(QUIET_S)
                context.close()
            _summary("new tab, scripts cached", cached)
            _summary("new tab, empty browser cache", fresh)

            page = seen.new_page()
            _goto_drawn(page, url)
            time.sleep(3)
            typed = []
            for i in range(loads):
                page.locator("textarea").fill(f"Round {i}. {TEXT}")
                page.evaluate(WATCH, page.evaluate("window.__href"))
                page.locator("textarea").press("Control+Enter")
                typed.append((_wait(page) - page.evaluate("window.__armed")) / 1000)
                time.sleep(QUIET_S)  # its module timing runs after the maps; let it end
            _summary("new text on the open page", typed)
            browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    main(parser.parse_args().loads)
