"""Seconds until each chapter of the story is drawn in Chromium, in presenter mode, on this CPU:

- chapter 1 in a new tab (the server and its worker already warm: MiniLM loaded once before),
  which waits for its own measurement;
- chapters 2 to 6 after Next, once the run-ahead is done (the worker measured them while
  chapter 1 was on screen), which is what the audience waits for;
- each chapter again after Previous (its result kept in the session).

    python -m bench.story_browser [--loads N] [--speak S]     (needs Debian's chromium)
"""
from __future__ import annotations

import argparse
import time

from bench.models_page_browser import _summary, chromium, served_app

FIGURE = ".st-key-story_fig_{n} .js-plotly-plot .main-svg"
CHAPTERS = 6


def _drawn(page, n: int, t0: float, limit_s: float = 600) -> float:
    page.wait_for_selector(FIGURE.format(n=n), timeout=limit_s * 1000)
    return time.perf_counter() - t0


def _walk(context, url: str, speak_s: float) -> tuple[float, list[float], list[float]]:
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    first = _drawn(page, 1, t0)
    time.sleep(speak_s)  # the presenter speaks; the worker measures chapters 2 to 6
    nexts, backs = [], []
    for n in range(2, CHAPTERS + 1):
        t0 = time.perf_counter()
        page.locator(".st-key-story_next button").click()
        nexts.append(_drawn(page, n, t0))
        time.sleep(2)
    for n in range(CHAPTERS - 1, 0, -1):
        t0 = time.perf_counter()
        page.locator(".st-key-story_prev button").click()
        backs.append(_drawn(page, n, t0))
        time.sleep(1)
    page.close()
    return first, nexts, backs


def main(loads: int = 2, speak_s: float = 150) -> None:
    from playwright.sync_api import sync_playwright

    with served_app() as address:
        url = f"{address}/story?present=1"
        with sync_playwright() as p:
            browser = chromium(p)
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            _walk(context, url, speak_s)  # the worker starts, MiniLM loads, caches warm: not counted
            firsts, nexts, backs = [], {n: [] for n in range(2, CHAPTERS + 1)}, []
            for _ in range(loads):
                first, after_next, after_back = _walk(context, url, speak_s)
                firsts.append(first)
                for n, s in zip(range(2, CHAPTERS + 1), after_next):
                    nexts[n].append(s)
                backs += after_back
            _summary("chapter 1 in a new tab (measured while you wait)", firsts)
            for n, seconds in nexts.items():
                _summary(f"chapter {n} after Next, run-ahead done", seconds)
            _summary("any chapter after Previous (kept)", backs)
            browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=2)
    parser.add_argument("--speak", type=float, default=150, help="seconds on chapter 1 before Next")
    args = parser.parse_args()
    main(args.loads, args.speak)
