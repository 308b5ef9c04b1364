"""The long fuzz run of issue #16: many hostile command lines through attn's CLI, each judged
by the contract (a result, or exit 2 with one line on stderr; anything else is "other", which
must be 0), with the longest call of each command.

The strategies are the fuzz suite's (tests/fuzz_inputs.py), with many more examples and a seed
of your choice. Calls run in this process through `attn.cli.main` (a subprocess each would
spend its time importing torch), each under a time limit: a call past it is a hang, counted as
"other". Sizes that would run a kernel are tiny or invalid (see fuzz_inputs); `cost` takes any
size. The run store and calibration file are a temporary ATTN_HOME's.

    python -m bench.fuzz [--examples 2000] [--seed 1] [--limit 30] [--json]   (from the repo root)

`run_fuzz(examples, seed)` returns the figures as a dict, for bench/reliability.py.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

import psutil
from hypothesis import HealthCheck, Phase, given, seed as seeded, settings
from hypothesis import strategies as st

from tests import fuzz_inputs as F

# each command's share of the examples (runs: on an empty store, so mostly refusals): cost is closed-form and takes any size; a valid plan
# loads MiniLM and measures its drift (about 12 s on 2 cores), so plans get few
SHARES = {"cost": 0.40, "profile": 0.20, "maps": 0.10, "sweep": 0.10, "runs": 0.05, "junk": 0.05,
          "plan": 0.01}


@st.composite
def plan_argv(draw) -> list[str]:
    """`attn plan` on MiniLM without timing (costs and quality only)."""
    flags = [("--kv-heads", F.flag_text(F.hostile_ints)), ("--max-tokens", F.flag_text(st.integers(-2, 16))),
             ("--activation", st.one_of(st.sampled_from(("softmax", "sigmoid", "relu")), F.hostile_text))]
    return ["plan", "--layers", draw(F.plan_texts), "--no-timing", *draw(F._flags(flags, 2)), "--json"]


# a valid plan measures MiniLM's drift over the shipped sentences: 12 s on 2 idle cores, past
# 30 s on busy ones, so a plan gets longer before it counts as a hang
LIMIT_S = {"plan": 120.0}

# one valid call of each command before the count, so that the longest call is not an import
# (torch's profiler, the variants, MiniLM)
WARM_UP = {"cost": ["cost", "--variant", "dense"],
           "profile": ["profile", "--variant", "dense", *F.TINY, "--budget", "0", "--device", "cpu"],
           "maps": ["maps", "--variant", "dense", *F.TINY, "--device", "cpu"],
           "sweep": ["sweep", "--variants", "dense", *F.TINY, "--budget", "0", "--device", "cpu"],
           "plan": ["plan", "--layers", "0:full", "--no-timing", "--max-tokens", "8"]}

STRATEGIES = {"cost": F.cost_argv(), "profile": F.profile_argv(), "maps": F.maps_argv(),
              "sweep": F.sweep_argv(), "runs": F.runs_argv(), "junk": F.junk_argv(), "plan": plan_argv()}


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def fuzz_command(command: str, examples: int, seed: int, limit_s: float) -> list[F.Outcome]:
    """`examples` calls of one command's strategy (generation only: nothing fails, so nothing
    shrinks)."""
    outcomes: list[F.Outcome] = []

    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(STRATEGIES[command])
    def one(argv: list[str]) -> None:
        outcomes.append(F.call_cli(argv, limit_s))

    seeded(seed)(one)()
    return outcomes


def run_fuzz(examples: int = 2000, seed: int = 1, limit_s: float = 30.0,
             commands: tuple[str, ...] = tuple(SHARES)) -> dict[str, Any]:
    """The figures: calls, outcomes (result / error / other), the longest call of each command,
    the "other" calls themselves, and this process's resident memory before and after."""
    home = tempfile.mkdtemp(prefix="attn-fuzz-")
    previous = os.environ.get("ATTN_HOME")
    os.environ["ATTN_HOME"] = home  # no call touches the user's runs or calibration
    from attn.runs import RunStore

    for latency_ms in (1.0, 2.0, 3.0):  # runs 1 to 3, for `runs show` and `runs export` to find
        RunStore().save("profile", {"seq": 8, "heads": 2}, {"latency_ms": latency_ms}, variant="sdpa")
    start, rss_before = time.perf_counter(), _rss_mib()
    try:
        per_command = {}
        for command in commands:
            if command in WARM_UP:
                F.call_cli(WARM_UP[command], 300)
            outcomes = fuzz_command(command, max(2, round(examples * SHARES[command])), seed,
                                    max(limit_s, LIMIT_S.get(command, 0.0)))
            longest = max(outcomes, key=lambda o: o.seconds, default=None)
            per_command[command] = {
                "calls": len(outcomes), "limit_s": max(limit_s, LIMIT_S.get(command, 0.0)),
                **{kind: sum(o.kind == kind for o in outcomes) for kind in ("result", "error", "other")},
                "longest_s": round(longest.seconds, 3) if longest else None,
                "longest_argv": longest.argv if longest else None,
                "others": [{"argv": o.argv, "detail": o.detail[:500]} for o in outcomes if o.kind == "other"][:20],
            }
    finally:
        if previous is None:
            os.environ.pop("ATTN_HOME", None)
        else:
            os.environ["ATTN_HOME"] = previous
    totals = {kind: sum(c[kind] for c in per_command.values()) for kind in ("calls", "result", "error", "other")}
    return {"examples": examples, "seed": seed, "limit_s": limit_s, **totals,
            "seconds": round(time.perf_counter() - start, 1), "rss_mib_before": round(rss_before),
            "rss_mib_after": round(_rss_mib()), "commands": per_command,
            "convention": "result: exit 0; error: exit 2 with one line on stderr; other: anything else "
                          "(an exception, a traceback, several lines, no answer within limit_s)"}


def human(figures: dict[str, Any]) -> str:
    lines = [f"{figures['calls']} calls in {figures['seconds']} s (seed {figures['seed']}): "
             f"{figures['result']} results, {figures['error']} one-line errors, {figures['other']} other; "
             f"resident memory {figures['rss_mib_before']} -> {figures['rss_mib_after']} MiB"]
    for command, c in figures["commands"].items():
        lines.append(f"  {command:8} {c['calls']:5} calls: {c['result']:5} result {c['error']:5} error "
                     f"{c['other']:3} other; longest {c['longest_s']} s: {' '.join(c['longest_argv'] or [])}")
        lines += [f"    OTHER {' '.join(o['argv'])}: {o['detail']}" for o in c["others"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="calls in all, shared among the commands")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=float, default=30.0,
                        help="seconds a call may take before it is a hang (plan: at least 120)")
    parser.add_argument("--commands", default=",".join(SHARES), help=f"some of {', '.join(SHARES)}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = run_fuzz(args.examples, args.seed, args.limit, tuple(args.commands.split(",")))
    print(json.dumps(figures, indent=1) if args.json else human(figures))
    return figures


if __name__ == "__main__":
    main()
