"""`attn selftest`: attn checks its own numbers on the device it runs on.

Every check is one row: passed, failed (with the figure that failed) or not possible here (with
the reason). The checks themselves are in attn.selftest_checks; this module lists them for a
device, runs them one by one (a progress step each), and keeps the result as a run of kind
"selftest" in the run store, so that it can be exported and compared between machines.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

from attn import selftest_checks as checks
from attn import variants
from attn.regimes import MODES
from attn.selftest_checks import FAILED, NOT_HERE, PASSED, Check

KIND = "selftest"
STATUSES = (PASSED, FAILED, NOT_HERE)


@dataclass(frozen=True)
class Planned:
    """A check to run: its name and group before it runs, and the call that runs it."""

    name: str
    group: str
    run: Callable[[], Check]


def planned_checks(device: str, quick: bool = False) -> list[Planned]:
    """Every check for this device, in the order they run and are shown."""
    names = variants.names()
    plan = [Planned(f"{name} {mode} against float64", "accuracy",
                    functools.partial(checks.accuracy, name, mode, device, quick))
            for name in names for mode in MODES]
    plan += [Planned(f"{name} FLOPs and bytes against closed forms", "cost",
                     functools.partial(checks.cost_closed_form, name, device, quick)) for name in names]
    plan += [Planned(f"{name} FLOPs against torch's FLOP counter", "cost",
                     functools.partial(checks.flop_counter, name, device, quick)) for name in names]
    plan += [
        Planned("profiler median against an independent timer", "timing",
                functools.partial(checks.timer_agreement, device, quick)),
        Planned("sdpa auto's choice against each backend", "backend",
                functools.partial(checks.sdpa_choice, device, quick)),
        Planned("NVML energy over a known loop", "gpu", functools.partial(checks.nvml_energy, device, quick)),
        Planned("memory returns to its baseline after an out-of-memory", "gpu",
                functools.partial(checks.memory_after_oom, device, quick)),
    ]
    return plan


def run_one(planned: Planned) -> Check:
    """A check's row; a check that raises has failed, and its row says with what."""
    try:
        return planned.run()
    except Exception as err:  # a crash in a check is a result to show, not the end of the run
        first = str(err).splitlines()[0] if str(err) else ""
        return Check(planned.name, planned.group, FAILED, f"raised {type(err).__name__}: {first}"[:300])


def run_selftest(device: str = "auto", quick: bool = False,
                 progress: Callable[[int, int, str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> dict:
    """Run every check on `device` ('cpu', 'cuda' or 'auto'); ValueError for a CUDA device that
    is not here. `progress(done, total, name)` is called before each check. Returns a plain dict:
    device, device_name, quick, checks (rows), the counts by status, wall_s."""
    from attn.device import device_name, resolve_device

    device = resolve_device(device)
    started = time.perf_counter()
    plan = planned_checks(device, quick)
    rows: list[dict] = []
    for i, planned in enumerate(plan):
        if cancelled is not None and cancelled():
            break
        if progress is not None:
            progress(i, len(plan), planned.name)
        rows.append(run_one(planned).to_dict())
    if progress is not None:
        progress(len(rows), len(plan), "done")
    counts = {status: sum(r["status"] == status for r in rows) for status in STATUSES}
    return {"device": device, "device_name": device_name(device), "quick": quick, "mode": "all",
            "checks": rows, "passed": counts[PASSED], "failed": counts[FAILED],
            "not_possible": counts[NOT_HERE], "complete": len(rows) == len(plan),
            "wall_s": time.perf_counter() - started}


def all_passed(result: dict) -> bool:
    """No check failed and every planned check ran (rows not possible here do not fail a run)."""
    return result["failed"] == 0 and result.get("complete", True)


def save(result: dict, store=None) -> int:
    """Keep the result as a run of kind "selftest" in the run store; returns its id."""
    from attn.environment import environment
    from attn.runs import RunStore

    store = store or RunStore()
    label = (f"selftest{' --quick' if result['quick'] else ''}: {result['passed']} passed, "
             f"{result['failed']} failed, {result['not_possible']} not possible here")
    return store.save(KIND, {"device": result["device"], "quick": result["quick"]}, result,
                      environment=environment(result["device"]), label=label)


def table_lines(result: dict) -> list[str]:
    """The result as a plain-text table, one line a check, for the command line."""
    rows = result["checks"]
    width = max((len(r["name"]) for r in rows), default=10)
    lines = [f"attn selftest on {result['device_name']} ({result['device']})"
             f"{', quick' if result['quick'] else ''}: {result['passed']} passed, "
             f"{result['failed']} failed, {result['not_possible']} not possible here "
             f"in {result['wall_s']:.1f} s"]
    for r in rows:
        detail = r["figure"] or r["reason"]
        if r["figure"] and r["reason"] and r["status"] != PASSED:
            detail = f"{r['figure']} ({r['reason']})"
        lines.append(f"  {r['status']:<17}  {r['name']:<{width}}  {detail}")
    return lines
