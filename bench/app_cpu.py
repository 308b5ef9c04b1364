"""Dashboard speed on this machine: start to first page drawn in a browser, a cached Playground
rerun's server time, and the largest figure sent to the browser.

    python -m bench.app_cpu            (needs Debian's chromium for the first figure)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_to_first_page(runs: int = 3) -> list[float]:
    """Seconds from launching the app as `make run` does to the Overview's title in Chromium."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for _ in range(runs):
            port = _free_port()
            env = {**os.environ, "ATTN_HOME": tempfile.mkdtemp()}
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.port",
                                     str(port), "--server.headless", "true"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            page = browser.new_page()
            try:
                while True:  # poll the health endpoint, as a person reloading would, but finer
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                        break
                    except OSError:
                        time.sleep(0.02)
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector('[data-testid="stApp"] h1', timeout=60_000)
                times.append(time.perf_counter() - t0)
            finally:
                page.close()
                proc.terminate()
                proc.wait(10)
        browser.close()
    return times


def cached_rerun_ms(reruns: int = 10) -> list[float]:
    """Server time of Playground reruns once its maps are cached (AppTest runs the script)."""
    from streamlit.testing.v1 import AppTest

    from attn import jobs

    jobs.set_default_runner(jobs.JobRunner(in_process=True))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["variants"] = "sdpa,sliding_window"
    at.query_params["seq"] = "1024"
    at.run()
    at.switch_page("views/playground.py").run()
    times = []
    for _ in range(reruns):
        t0 = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - t0) * 1e3)
    assert not at.exception, at.exception
    return times


def largest_figure_bytes() -> int:
    """The JSON size of a 512 x 512 map, the largest figure any page draws."""
    import numpy as np

    from attn import charts

    edges = list(range(0, 32769, 64))
    return len(charts.attention_heatmap(np.random.rand(512, 512), edges, edges, log_scale=True).to_json())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("ATTN_HOME", tempfile.mkdtemp())
    result = {"cached_rerun_ms": cached_rerun_ms(), "largest_figure_bytes": largest_figure_bytes()}
    if shutil.which("chromium"):
        result["start_to_first_page_s"] = start_to_first_page()
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print("| measure | median | all |\n| --- | --- | --- |")
    print(f"| Playground rerun, cached (server ms) | {statistics.median(result['cached_rerun_ms']):.0f} | "
          + ", ".join(f"{t:.0f}" for t in result["cached_rerun_ms"]) + " |")
    if "start_to_first_page_s" in result:
        print(f"| start to first page drawn (s) | {statistics.median(result['start_to_first_page_s']):.2f} | "
              + ", ".join(f"{t:.2f}" for t in result["start_to_first_page_s"]) + " |")
    print(f"| largest figure (512 x 512 map, MB) | {result['largest_figure_bytes'] / 1e6:.2f} | |")


if __name__ == "__main__":
    main()
