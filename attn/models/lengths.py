"""A model measured at several lengths, one point after another: each point checked against the
free memory before it runs, the whole curve held to a time budget, stopped on a cancel, and any
failure reported as the point's status in one line (the points already measured are kept).

A point's `status` is "ok", or why it has no numbers, in words:
"does not fit: needs ~X, Y free on cpu", "not measured: about 40 s projected, 12 s of the 60 s
budget left", "not measured: cancelled", "failed: ValueError: ...".
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable

from attn.device import free_bytes, is_out_of_memory, oom_message
from attn.readable import nbytes

OK = "ok"


def measured_points(result: dict) -> list[dict]:
    """The points of a curve's result (its "points") that have numbers."""
    return [p for p in result.get("points", []) if p.get("status") == OK]


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters: what a point's status says."""
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def projected_s(done: list[tuple[int, float]], length: int) -> float | None:
    """Seconds the point at `length` should take, from the points measured so far: the last one
    scaled by (length / its length)^p, p the growth between the last two points held to [1, 2]
    (2, the attention core's, from a single point). None before any point."""
    if not done:
        return None
    n1, s1 = done[-1]
    power = 2.0
    if len(done) >= 2:
        n0, s0 = done[-2]
        if n1 > n0 and s0 > 0 and s1 > 0:
            power = min(2.0, max(1.0, math.log(s1 / s0) / math.log(n1 / n0)))
    return s1 * (length / n1) ** power


def measure_lengths(lengths: Iterable[int], measure: Callable[[int], dict], need_bytes: Callable[[int], int],
                    device: str, budget_s: float, key: str = "seq",
                    cancelled: Callable[[], bool] | None = None,
                    on_point: Callable[[dict, float], None] | None = None) -> list[dict]:
    """One row per length, in order: {key: length, status, seconds, **measure(length)} when it
    ran, {key: length, status} when it did not. Once a point does not fit, fails, or would run
    past the budget, the longer ones are not tried (each says why)."""
    lengths = list(lengths)
    rows: list[dict] = []
    done: list[tuple[int, float]] = []
    spent = 0.0
    skip: str | None = None  # why the remaining lengths are not tried
    for i, length in enumerate(lengths):
        row: dict = {key: length}
        if skip is None and cancelled is not None and cancelled():
            skip = "not measured: cancelled"
        if skip is not None:
            row["status"] = skip
        else:
            need, free = need_bytes(length), free_bytes(device)
            ahead = projected_s(done, length)
            if need > free:
                row["status"] = f"does not fit: needs ~{nbytes(need)}, {nbytes(free)} free on {device}"
                skip = f"not measured: {key} {length} did not fit"
            elif ahead is not None and spent + ahead > budget_s:
                row["status"] = (f"not measured: about {ahead:.0f} s projected, "
                                 f"{max(0.0, budget_s - spent):.0f} s of the {budget_s:g} s budget left")
                skip = row["status"]
            else:
                start = time.perf_counter()
                try:
                    row.update(measure(length))
                    row["status"] = OK
                except Exception as exc:  # the reason is the point's result; the curve so far stays
                    if is_out_of_memory(exc):
                        row["status"] = oom_message(exc)
                        skip = f"not measured: {key} {length} ran out of memory"
                    else:
                        row["status"] = f"failed: {one_line(exc)}"
                        skip = f"not measured: {key} {length} failed"
                seconds = time.perf_counter() - start
                row["seconds"] = seconds
                spent += seconds
                if row["status"] == OK:
                    done.append((length, seconds))
        rows.append(row)
        if on_point is not None:
            on_point(row, (i + 1) / len(lengths))
    return rows
