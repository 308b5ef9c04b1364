"""Profiles and sweeps in a named regime (forward, train, decode), queued from the Runs page (a
saved run measured again in its own mode) and the Economics page (a quick train or decode
measurement), and saved as runs when they end.

These jobs keep their results only as runs. They never enter the Playground's cards, which are
kept per spec and variant: a train profile's spec is the forward one's, and its step time would
stand in for a forward call there."""
from __future__ import annotations

from typing import Any

from attn import tasks
from attn.spec import AttentionSpec
from ui import follow, results

PROFILE_BUDGET_S = 0.3


def profile_job(spec: AttentionSpec, name: str, mode: str, budget_s: float = PROFILE_BUDGET_S,
                title: str = "") -> follow.Job:
    """Profile one variant in a regime (for decode, `spec` is a decode step's: regimes.decode_spec)."""
    return follow.job(tasks.profile_task, spec.to_dict(), name, budget_s, None, mode=mode, kind="profile",
                      title=title or f"{name} ({mode}) at {spec_words(spec, mode)}",
                      tag=("profile", spec, name))


def sweep_job(spec: AttentionSpec, names: list[str], xs: list[int], axis: str, budget_s: float, mode: str,
              title: str) -> follow.Job:
    return follow.job(tasks.sweep_task, spec.to_dict(), list(names), list(xs), axis, float(budget_s),
                      mode=mode, kind="sweep", title=title, tag=("sweep", spec, ",".join(names)))


def keep_all(view: follow.JobView | None) -> list[int]:
    """Save every result of a followed batch of these jobs as a run; the new runs' ids."""
    ids = [_keep(tag, result) for tag, result in view.results] if view else []
    return [run_id for run_id in ids if run_id is not None]


def _keep(tag: tuple[str, AttentionSpec, str], result: dict[str, Any]) -> int | None:
    kind, spec, name = tag
    return results.save_run(kind, spec, result, name)


def spec_words(spec: AttentionSpec, mode: str) -> str:
    """Where a job runs, in words: "context 4,096" for a decode step, else "seq 1,024"."""
    if mode == "decode":
        return f"context {spec.kv_seq:,}" + (f", {spec.seq} new tokens" if spec.seq > 1 else "")
    return f"seq {spec.seq:,}"
