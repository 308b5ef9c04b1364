"""The figures of issue 16, from one script: hostile input answered, costs bounded, kills
survived, the server's memory over a long session (and one process calling the CLI 600 times), and six
browser tabs at once.

    python -m bench.reliability                 # every section (tens of minutes on 2 cores)
    python -m bench.reliability --quick         # fewer examples, reruns and trials
    python -m bench.reliability --only costs,memory --json out.json

Each section prints its figures; --json writes them all. The machine's load (`os.getloadavg`) is
printed with them: the machines this is run on are shared.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAGES = ("overview", "playground", "scaling", "roofline", "monitor", "compare", "runs", "economics",
         "models", "planner", "story")
# sizes far past any memory, where only a closed form answers: every variant, every regime
HUGE = (1, 4096, 10 ** 6, 10 ** 12, 10 ** 18)


# -- the longest cost ---------------------------------------------------------------------------
def longest_costs(sizes: tuple[int, ...] = HUGE) -> dict[str, Any]:
    """Every variant x regime x size x (causal, not) x (GQA, not) through attention_cost: how
    many calls, how many answered or refused in one line, and the slowest."""
    from attn import variants
    from attn.cost import attention_cost
    from attn.regimes import MODES, decode_spec
    from attn.spec import AttentionSpec

    calls, answered, refused, other, slowest = 0, 0, 0, [], (0.0, "")
    for name in variants.names():
        for mode in MODES:
            for seq in sizes:
                for causal in (False, True):
                    for kv_heads in (8, 1):
                        what = f"{name} {mode} seq {seq:.0e} causal={causal} kv_heads={kv_heads}"
                        start = time.perf_counter()
                        try:
                            spec = AttentionSpec(seq=seq, heads=8, kv_heads=kv_heads, head_dim=128,
                                                 causal=causal or mode == "decode")
                            if mode == "decode":
                                spec = decode_spec(spec.with_(seq=1), max(seq, 2))
                            attention_cost(spec, name, mode)
                            answered += 1
                        except ValueError:
                            refused += 1
                        except Exception as exc:  # noqa: BLE001 - counted, and must stay 0
                            other.append(f"{what}: {type(exc).__name__}: {exc}")
                        took = time.perf_counter() - start
                        calls += 1
                        if took > slowest[0]:
                            slowest = (took, what)
    return {"calls": calls, "answered": answered, "one_line_refusals": refused, "other": len(other),
            "other_examples": other[:5], "longest_ms": round(slowest[0] * 1e3, 2), "longest": slowest[1]}


# -- the server's memory over a long session ----------------------------------------------------
def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2 ** 20


def page_memory(page: str, reruns: int, every: int = 100) -> dict[str, Any]:
    """Resident memory of this process (the server's, in AppTest) while a page reruns: after
    the first `every` reruns and after each `every` more. Jobs run on a thread of this process,
    so what they keep is counted too."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    samples, exceptions = [], 0
    start = time.perf_counter()
    for i in range(1, reruns + 1):
        at.run()
        exceptions += len(at.exception)
        if i % every == 0:
            gc.collect()
            samples.append(round(_rss_mib(), 1))
    return {"page": page, "reruns": reruns, "rss_mib": samples, "exceptions": exceptions,
            "growth_after_first_mib": round(samples[-1] - samples[0], 1) if samples else None,
            "seconds": round(time.perf_counter() - start, 1)}


def server_memory(reruns: int, pages: tuple[str, ...] = PAGES) -> dict[str, Any]:
    from attn import jobs

    runner = jobs.JobRunner(in_process=True)
    jobs.set_default_runner(runner)
    try:
        with tempfile.TemporaryDirectory() as home:
            os.environ["ATTN_HOME"] = home
            per_page = []
            for page in pages:
                per_page.append(page_memory(page, reruns))
                print(f"  {page}: {per_page[-1]}", flush=True)
    finally:
        runner.shutdown()
        jobs.set_default_runner(None)
    return {"reruns_per_page": reruns, "pages": per_page, "rss_end_mib": round(_rss_mib(), 1)}


# -- one process calling the CLI's entry point again and again ---------------------------------------
def cli_memory(calls: int = 600, every: int = 100, seed: int = 1) -> dict[str, Any]:
    """Resident memory of one process that calls attn.cli.main `calls` times (cost, profile and
    maps of every variant at 512 to 4096 tokens): after the first `every` calls and each `every`
    more. The issue's figure was 230 MB growing to 830 MB over 600 calls."""
    import random

    from attn import variants
    from attn.cli import main as cli

    rng = random.Random(seed)
    samples, start = [round(_rss_mib(), 1)], time.perf_counter()
    for i in range(1, calls + 1):
        command = rng.choice(["cost", "profile", "maps"])
        argv = [command, "--variant", rng.choice(variants.names()), "--seq", str(rng.choice([512, 1024, 2048, 4096])),
                "--heads", str(rng.choice([1, 2, 4])), "--head-dim", str(rng.choice([16, 64, 128])),
                "--seed", str(rng.randint(0, 10 ** 6)), "--json", *(["--causal"] if rng.random() < 0.5 else [])]
        argv += {"profile": ["--budget", "0"], "maps": ["--max-size", "32"]}.get(command, [])
        with contextlib.redirect_stdout(io.StringIO()):
            cli(argv)
        if i % every == 0:
            samples.append(round(_rss_mib(), 1))
    return {"calls": calls, "rss_mib_at_start_then_every_100": samples,
            "growth_after_first_100_mib": round(samples[-1] - samples[1], 1) if len(samples) > 1 else None,
            "seconds": round(time.perf_counter() - start, 1)}


# -- six browser tabs at once -------------------------------------------------------------------
def six_tabs(tabs: int = 6) -> dict[str, Any]:
    """Six tabs of the Playground profile at once against one server: how long until every tab
    shows its result, and how many showed an exception."""
    from playwright.sync_api import sync_playwright

    from bench.models_page_browser import chromium, served_app

    variants = ["dense", "sdpa", "sliding_window", "block_sparse", "linear", "performer"]
    with served_app() as address, sync_playwright() as p:
        browser = chromium(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pages = []
        for i in range(tabs):
            page = context.new_page()
            page.goto(f"{address}/playground?variants={variants[i % len(variants)]}&seq=512",
                      wait_until="domcontentloaded")
            pages.append(page)
        for page in pages:
            page.get_by_role("button", name="Profile").wait_for(timeout=120_000)
        start = time.perf_counter()
        for page in pages:
            page.get_by_role("button", name="Profile").click()
        finished = []
        for page in pages:
            page.get_by_text("latency (median)").first.wait_for(timeout=600_000)
            finished.append(round(time.perf_counter() - start, 1))
        exceptions = sum(page.locator('[data-testid="stException"]').count() for page in pages)
        browser.close()
    return {"tabs": tabs, "all_done_s": max(finished), "each_done_s": finished, "exceptions": exceptions}


# -- hostile input and kills (the fuzz and fault helpers own their code) --------------------------
def fuzz(examples: int, seed: int) -> dict[str, Any]:
    from bench.fuzz import run_fuzz

    return run_fuzz(examples, seed)


def kills(trials: int, seed: int) -> dict[str, Any]:
    from bench.faults import kill_store_writer_trials, kill_worker_trials

    return {"worker": kill_worker_trials(trials, seed), "store_writer": kill_store_writer_trials(trials, seed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer examples, reruns and trials")
    parser.add_argument("--only", default="fuzz,costs,kills,memory,cli,tabs",
                        help="sections to run, comma-separated")
    parser.add_argument("--reruns", type=int, help="AppTest reruns a page (default 1000; --quick 200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    quick = args.quick
    sections: dict[str, Callable[[], dict]] = {
        "fuzz": lambda: fuzz(300 if quick else 2000, args.seed),
        "costs": longest_costs,
        "kills": lambda: kills(5 if quick else 20, args.seed),
        "memory": lambda: server_memory(args.reruns or (200 if quick else 1000)),
        "cli": lambda: cli_memory(200 if quick else 600),
        "tabs": six_tabs,
    }
    figures: dict[str, Any] = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the CLI's one-line errors, by the thousand
            result = sections[name]()
        result["section_s"] = round(time.perf_counter() - start, 1)
        figures[name] = result
        print(json.dumps(result, indent=1), flush=True)
    figures["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
