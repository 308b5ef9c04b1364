"""Kills survived: the job worker and the run store's writer killed with SIGKILL at random moments.

    python -m bench.faults [--worker N] [--store N] [--seed S]

`kill_worker_trials` kills the job runner's worker process before a job starts, in the middle of
a job, or while it sends its result back, and checks that the killed job ends (failed, with a
reason, or done with its exact result when the kill came too early or too late to hit it) and
that the next job runs fine on the restarted worker.

`kill_store_writer_trials` runs a process that saves runs in a loop (maps of random sizes, so
some transactions spill into the WAL before they commit), kills it at a random moment, and then
checks `PRAGMA integrity_check` and that every run the writer saw committed reads back whole.

Random points come from a fixed seed, so a run can be repeated. tests/test_faults.py calls the
same functions; bench/reliability.py reports their counts.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from attn.jobs import codec

codec.allow_module(__name__)  # the jobs below run in the worker, which imports them by name

WORKER_PHASES = ("before start", "mid-job", "sending a result")
RESULT_BYTES = 32 * 2**20  # big enough that sending it back takes a while to kill inside
JOB_TIMEOUT_S = 60.0


# -- the jobs the killed worker runs (module level, so the worker can import them) -------------

def echo(value: Any, *, report) -> Any:
    return value


def nap(seconds: float, *, report) -> str:
    report.progress(0.0, "napping")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    return "rested"


def big_result(nbytes: int, *, report) -> bytes:
    data = bytes(range(256)) * (nbytes // 256)
    report.progress(1.0, "sending")
    return data


# -- the worker --------------------------------------------------------------------------------

def _wait_for(condition, timeout: float = JOB_TIMEOUT_S) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def _kill(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _one_worker_kill(runner, phase: str, rng: random.Random) -> dict:
    """Kill the worker once in `phase`; what became of the killed job and of the next one."""
    # the worker never imports __main__, so the jobs come from this module by its own name even
    # under `python -m bench.faults`
    jobs = importlib.import_module("bench.faults")
    echo, nap, big_result = jobs.echo, jobs.nap, jobs.big_result
    warm = runner.submit(echo, "warm", kind="fault", title="warm-up")
    if warm.result(JOB_TIMEOUT_S) != "warm":
        return {"phase": phase, "ended": False, "reported": False, "next_ok": False}
    pid = runner.worker_pid
    if phase == "before start":
        handle = runner.submit(echo, phase, kind="fault", title=phase)
        time.sleep(rng.uniform(0.0, 0.005))
        expected: Any = phase
    elif phase == "mid-job":
        handle = runner.submit(nap, 1.0, kind="fault", title=phase)
        _wait_for(lambda: handle.status == "running" or handle.done())
        time.sleep(rng.uniform(0.0, 0.5))
        expected = "rested"
    else:
        handle = runner.submit(big_result, RESULT_BYTES, kind="fault", title=phase)
        _wait_for(lambda: handle.progress.message == "sending" or handle.done())
        time.sleep(rng.uniform(0.0, 0.03))
        expected = big_result(RESULT_BYTES, report=_Quiet())
    _kill(pid)
    ended = handle.wait(JOB_TIMEOUT_S)
    if handle.status == "done":  # the kill missed the job: then its result must be whole
        reported, ok = False, handle.result(0) == expected
    else:
        reported = handle.status == "failed" and handle.error_kind == "worker_died" and bool(handle.error)
        ok = reported
    following = runner.submit(echo, ("next", phase), kind="fault", title="the next job")
    try:
        next_ok, next_error = following.result(JOB_TIMEOUT_S) == ("next", phase), None
    except Exception as error:
        next_ok, next_error = False, f"{type(error).__name__}: {error}"
    return {"phase": phase, "ended": ended and ok, "reported": reported, "next_ok": next_ok,
            "status": handle.status, "error": handle.error, "next_error": next_error,
            "new_worker": runner.worker_pid != pid}


class _Quiet:
    def progress(self, *args: Any) -> None:
        pass


def kill_worker_trials(n: int = 9, seed: int = 16) -> dict:
    """Kill the job worker `n` times at random points (the phases in turn); count what survived.

    survived: the killed job ended (failed with a reason, or done with its exact result) and the
    next job returned its result. reported_failed: kills that landed inside a job."""
    from attn.jobs import JobRunner

    rng = random.Random(seed)
    trials = []
    with JobRunner(hard_cancel_after_s=None) as runner:
        for i in range(n):
            trials.append(_one_worker_kill(runner, WORKER_PHASES[i % len(WORKER_PHASES)], rng))
    survived = [t for t in trials if t["ended"] and t["next_ok"]]
    return {"trials": n, "survived": len(survived),
            "reported_failed": sum(t["reported"] for t in trials),
            "lost_jobs": sum(not t["ended"] for t in trials),
            "next_job_ok": sum(t["next_ok"] for t in trials),
            "by_phase": {p: {"trials": sum(t["phase"] == p for t in trials),
                             "survived": sum(t["phase"] == p for t in survived),
                             "reported_failed": sum(t["phase"] == p and t["reported"] for t in trials)}
                         for p in WORKER_PHASES},
            "messages": sorted({t["error"] for t in trials if t["reported"]}),
            "failures": [t for t in trials if t not in survived], "seed": seed}


# -- the run store's writer ----------------------------------------------------------------------

ENVIRONMENT = {"device": "fault test", "device_kind": "cpu"}


def _expected(trial: int, index: int) -> tuple[str, dict]:
    return f"trial {trial} run {index}", {"trial": trial, "index": index}


def write_runs_forever(path: str, trial: int) -> None:
    """Save runs until killed, printing "ID INDEX SIDE" once each is committed (SIDE: the maps'
    side, 0 for none)."""
    import numpy as np

    from attn.runs import RunStore

    store = RunStore(path)
    rng = np.random.default_rng(trial)
    print("ready", flush=True)
    for index in range(10**9):
        side = int(rng.choice([0, 8, 64, 256, 512]))
        maps = {"values": rng.random((side, side), np.float32)} if side else None
        label, results = _expected(trial, index)
        run_id = store.save("maps", {"seq": side}, results, variant="dense", maps=maps,
                            environment=ENVIRONMENT, label=label)
        print(run_id, index, side, flush=True)


def kill_store_writer_trials(n: int = 8, seed: int = 16, folder: str | None = None) -> dict:
    """Kill a writer of the run store `n` times at random moments, into one store; then check
    its integrity and that every run seen committed (across all trials) reads back whole."""
    from attn.runs import RunStore

    rng = random.Random(seed)
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="attn_faults_"))
        path = Path(folder) / "runs.sqlite"
        committed: dict[int, tuple[int, int, int]] = {}  # id -> (trial, index, side)
        integrity_ok = survived = 0
        lost: set[int] = set()
        for trial in range(n):
            writer = seed * 1000 + trial
            for run_id, index, side in _killed_writer(path, writer, rng):
                committed[run_id] = (writer, index, side)
            with contextlib.closing(sqlite3.connect(path)) as raw:
                fine = raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            store = RunStore(path)
            missing = {run_id for run_id, want in committed.items() if not _reads_back(store, run_id, want)}
            store.close()
            lost |= missing
            integrity_ok += fine
            survived += fine and not missing
        return {"trials": n, "survived": survived, "integrity_ok": integrity_ok,
                "runs_committed": len(committed), "lost_runs": len(lost), "seed": seed}


def _killed_writer(path: Path, trial: int, rng: random.Random) -> list[tuple[int, int, int]]:
    with tempfile.TemporaryFile("w+") as errors, subprocess.Popen(
            [sys.executable, "-m", "bench.faults", "--writer", str(path), str(trial)],
            stdout=subprocess.PIPE, stderr=errors, text=True, cwd=Path(__file__).parent.parent) as writer:
        try:
            first = writer.stdout.readline().strip()
            if first != "ready":
                errors.seek(0)
                raise RuntimeError(f"the writer did not start: {first!r} {errors.read()[-500:]}")
            time.sleep(rng.uniform(0.0, 0.4))
            _kill(writer.pid)
            writer.wait(JOB_TIMEOUT_S)
            out = writer.stdout.read()  # not communicate(): it would skip what readline() buffered
        finally:
            writer.kill()
    # only whole lines: one cut short by the kill names no run the writer saw committed
    return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in out.split("\n")[:-1])]


def _reads_back(store, run_id: int, want: tuple[int, int, int]) -> bool:
    trial, index, side = want
    try:
        run = store.get(run_id)
    except Exception:
        return False
    label, results = _expected(trial, index)
    shape = None if run.maps is None else run.maps["values"].shape
    return (run.label, run.results) == (label, results) and shape == ((side, side) if side else None)


# -- a full disk, without filling one: a file-size limit ------------------------------------------

def limit_file_size(nbytes: int) -> None:
    """In this process (and what it starts): no file may grow past `nbytes`. SIGXFSZ is ignored,
    so a write past the limit fails with OSError(EFBIG) instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def run_with_file_size_limit(args: list[str], nbytes: int, env: dict[str, str] | None = None,
                             timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run a command whose files may not grow past `nbytes`, as on a disk that is full."""
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout,
                          preexec_fn=lambda: limit_file_size(nbytes))


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """`limit_file_size` in this process for the block, then as it was."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--worker", type=int, default=9, help="kills of the job worker")
    parser.add_argument("--store", type=int, default=10, help="kills of the run store's writer")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--writer", nargs=2, metavar=("DB", "TRIAL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.writer:
        write_runs_forever(args.writer[0], int(args.writer[1]))
        return
    started = time.monotonic()
    worker = kill_worker_trials(args.worker, args.seed)
    store = kill_store_writer_trials(args.store, args.seed)
    print(json.dumps({"worker": worker, "store": store,
                      "seconds": round(time.monotonic() - started, 1)}, indent=1))


if __name__ == "__main__":
    main()
