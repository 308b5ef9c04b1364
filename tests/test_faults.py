"""Faults (issue 16, part 4): the worker and the store's writer killed at random points, a full
disk under ATTN_HOME, an ATTN_HOME that cannot be used, a corrupt calibration cache and a run store
from a newer attn. Each ends in one clear message, with nothing lost and nothing overwritten.

Random points come from fixed seeds (bench/faults.py, which bench/reliability.py reports from).
A full disk is a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so that a write past it fails
with EFBIG, as on a full disk), in a subprocess or for a block of this process.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attn.cli import main as cli_main
from attn.runs import RunStore
from bench.faults import (WORKER_PHASES, kill_store_writer_trials, kill_worker_trials,
                          run_with_file_size_limit)

REPO = Path(__file__).resolve().parent.parent
ENVIRONMENT = {"device": "fault test", "device_kind": "cpu"}
SEED = 16


def home() -> Path:
    return Path(os.environ["ATTN_HOME"])


def cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attn: error: "), err
    return lines[0]


def saved_runs(path: Path) -> dict[int, tuple]:
    """Every run in the store at `path`, whole (maps included), to compare before and after."""
    store = RunStore(path)
    runs = {s.id: store.get(s.id) for s in store.list()}
    store.close()
    return {i: (r.label, r.spec, r.results, None if r.maps is None else r.maps["values"].tobytes())
            for i, r in runs.items()}


def store_with_runs(path: Path, side: int = 64) -> dict[int, tuple]:
    store = RunStore(path)
    rng = np.random.default_rng(SEED)
    for i in range(3):
        store.save("maps", {"seq": side}, {"latency_ms": float(i)}, variant="dense", label=f"kept {i}",
                   maps={"values": rng.random((side, side), np.float32)}, environment=ENVIRONMENT)
    store.close()
    return saved_runs(path)


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as raw:
        return raw.execute("PRAGMA integrity_check").fetchone()[0]


def cli_under_limit(nbytes: int, *argv: str):
    """`python -m attn ARGV` whose files may not grow past `nbytes` (a full disk)."""
    return run_with_file_size_limit([sys.executable, "-m", "attn", *argv], nbytes,
                                    env={**os.environ, "PYTHONPATH": str(REPO)})


# -- the worker and the store's writer, killed -----------------------------------------------------

@pytest.mark.slow
def test_the_worker_killed_at_random_points_fails_the_job_and_runs_the_next() -> None:
    got = kill_worker_trials(9, seed=SEED)
    assert got["survived"] == got["trials"] == 9, got["failures"]
    assert got["lost_jobs"] == 0 and got["next_job_ok"] == 9
    assert all(got["by_phase"][p]["trials"] == 3 for p in WORKER_PHASES)
    # kills landed inside jobs (not only between them), and each said why the job failed
    assert got["reported_failed"] >= 3
    assert got["messages"] and all("the worker process died (signal 9)" in m and "restarted" in m
                                   for m in got["messages"])


def test_a_job_sent_to_a_worker_that_died_idle_runs_on_the_restarted_one() -> None:
    # a stopped worker looks alive and takes the job into its pipe; killed before it reads it,
    # the job never started, so it goes to the restarted worker instead of failing
    from attn.jobs import JobRunner
    from bench.faults import echo

    with JobRunner() as runner:
        assert runner.submit(echo, "warm").result(60) == "warm"
        pid = runner.worker_pid
        os.kill(pid, signal.SIGSTOP)
        handle = runner.submit(echo, "after")
        deadline = time.monotonic() + 60
        while runner._current is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the supervisor writes the job into the stopped worker's pipe
        os.kill(pid, signal.SIGKILL)
        assert handle.result(60) == "after"
        assert runner.worker_pid not in (None, pid)


@pytest.mark.slow
def test_the_store_writer_killed_at_random_moments_loses_no_committed_run(tmp_path: Path) -> None:
    got = kill_store_writer_trials(8, seed=SEED, folder=str(tmp_path))
    assert (got["survived"], got["integrity_ok"], got["lost_runs"]) == (8, 8, 0), got
    assert got["runs_committed"] > 8  # the writer got runs in before each kill
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.save("profile", {}, {}, environment=ENVIRONMENT) > 0  # the dead writers' locks went

