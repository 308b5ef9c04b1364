"""Seconds until the Planner page is drawn in Chromium, with MiniLM already loaded in the server:

- a new tab opens the page (the form, before any plan is evaluated);
- Evaluate on MiniLM at 128 tokens without timing: the job in the worker (cost, the quality of
  36 sentences and 16 passages against the base, the maps before and after) until the cards show.

    python -m bench.planner_page_browser [--loads N]     (needs Debian's chromium)
"""
from __future__ import annotations

import argparse
import time

from bench.models_page_browser import _summary, chromium, served_app

PLAN = "0-4:sliding_window:16"
QUIET_S = 3


def _until(page, selector: str, t0: float, limit_s: float = 180) -> float:
    page.wait_for_selector(selector, timeout=limit_s * 1000)
    return time.perf_counter() - t0


def main(loads: int = 5) -> None:
    from playwright.sync_api import sync_playwright

    with served_app() as address:
        url = f"{address}/planner?model=minilm&plan={PLAN}&tokens=128"
        form = ".st-key-pl_go button"
        cards = "text=mean cosine to the base"
        with sync_playwright() as p:
            browser = chromium(p)
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    main(parser.parse_args().loads)
