"""Faults (issue 16, part 4): the worker and the store's writer killed at random points, a full
disk under ATTN_HOME, an ATTN_HOME that cannot be used, a corrupt calibration cache and a run store
from a newer attn. Each ends in one clear message, with nothing lost and nothing overwritten.

Random points come from fixed seeds (bench/faults.py, which bench/reliability.py reports from).
A full disk is a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so that a write past it fails
with EFBIG, as on a full disk), in a subprocess or for a block of this process.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attn import calibrate
from attn.calibrate import CalibrationWarning
from attn.cli import main as cli_main
from attn.home import AttnHomeError
from attn.runs import SCHEMA_VERSION, RunStore, RunStoreError
from bench.faults import (WORKER_PHASES, file_size_limit, kill_store_writer_trials, kill_worker_trials,
                          run_with_file_size_limit)
from tests.conftest import open_app

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


def test_a_job_sent_into_the_broken_pipe_of_a_worker_that_still_looks_alive_runs() -> None:
    # killed a moment ago: its pipe is closed while is_alive() still says True
    from attn.jobs import JobRunner
    from bench.faults import echo

    with JobRunner() as runner:
        assert runner.submit(echo, "warm").result(60) == "warm"
        pid = runner.worker_pid
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, its pipes closed, not yet reaped
        runner._proc.is_alive = lambda: True
        assert runner.submit(echo, "after").result(60) == "after"


@pytest.mark.slow
def test_the_store_writer_killed_at_random_moments_loses_no_committed_run(tmp_path: Path) -> None:
    got = kill_store_writer_trials(8, seed=SEED, folder=str(tmp_path))
    assert (got["survived"], got["integrity_ok"], got["lost_runs"]) == (8, 8, 0), got
    assert got["runs_committed"] > 8  # the writer got runs in before each kill
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.save("profile", {}, {}, environment=ENVIRONMENT) > 0  # the dead writers' locks went


# -- a full disk under ATTN_HOME --------------------------------------------------------------------

SAVE_BIG_RUN = """
import sys
import numpy as np
from attn.runs import RunStore
from attn.home import AttnHomeError
maps = {"values": np.random.default_rng(0).random((512, 512), np.float32)}
try:
    RunStore(sys.argv[1]).save("maps", {"seq": 512}, {}, maps=maps, environment={"device": "x"})
except AttnHomeError as error:
    print(type(error).__name__, error)
"""


def test_a_full_disk_fails_a_save_with_one_message_and_keeps_the_saved_runs() -> None:
    path = home() / "runs.sqlite"
    before = store_with_runs(path)
    # 64 KiB: the store opens (its -shm file is 32 KiB) but a 1 MiB run cannot go into the WAL
    done = run_with_file_size_limit([sys.executable, "-c", SAVE_BIG_RUN, str(path)], 64 * 1024,
                                    env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"RunStoreError the disk under ATTN_HOME ({home()}) is full"), done.stdout
    assert "nothing saved before was lost" in done.stdout and len(done.stdout.splitlines()) == 1
    assert integrity(path) == "ok"
    assert saved_runs(path) == before
    assert RunStore(path).save("profile", {}, {}, environment=ENVIRONMENT) == 4  # with room again


@pytest.mark.slow
def test_the_cli_on_a_full_disk_exits_2_with_one_line_and_keeps_the_runs() -> None:
    path = home() / "runs.sqlite"
    before = store_with_runs(path)
    # 16 KiB: even the store's 32 KiB -shm file cannot be made
    done = cli_under_limit(16 * 1024, "profile", "--variant", "dense", "--seq", "16", "--heads", "1",
                           "--head-dim", "8", "--budget", "0.01", "--save")
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr).startswith("attn: error: the disk under ATTN_HOME")
    assert integrity(path) == "ok" and saved_runs(path) == before


@pytest.mark.slow
def test_calibrating_on_a_full_disk_exits_2_and_keeps_the_cached_calibration() -> None:
    cache = home() / "calibration.json"
    other = {"device": "another device | torch 0", "torch": "0", "matmul_tflops": {"float32": 1.5},
             "bandwidth_gbps": 20.0, "sizes": {}, "measured_at": "2026-01-01T00:00:00Z"}
    cache.write_text(json.dumps({other["device"]: other}, indent=1))
    old = cache.read_bytes()
    done = cli_under_limit(len(old) + 64, "calibrate", "--device", "cpu", "--force")
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert line.startswith(f"attn: error: the disk under ATTN_HOME ({home()}) is full"), line
    assert cache.read_bytes() == old
    assert sorted(p.name for p in home().iterdir()) == ["calibration.json"]  # no half-written file


@pytest.mark.slow
def test_an_export_on_a_full_disk_exits_2_and_leaves_the_old_file(tmp_path: Path) -> None:
    store_with_runs(home() / "runs.sqlite", side=256)
    out = tmp_path / "exports" / "runs.json"
    out.parent.mkdir()
    out.write_text("an export made before")
    done = cli_under_limit(256 * 1024, "runs", "export", "1", "2", "--out", str(out))
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert line.startswith(f"attn: error: the disk under {out.parent} is full"), line
    assert "write it elsewhere" in line
    assert out.read_text() == "an export made before"
    assert sorted(p.name for p in out.parent.iterdir()) == ["runs.json"]


def test_the_app_on_a_full_disk_says_the_run_was_not_saved_and_keeps_serving() -> None:
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        import numpy as np
        import streamlit as st

        from ui import results

        big = {"values": np.random.default_rng(0).random((512, 512), np.float32)}
        run_id = results.save_run("maps", {"seq": 512}, {"environment": {"device": "x"}}, "dense", maps=big)
        st.write(f"saved as {run_id}")

    path = home() / "runs.sqlite"
    before = store_with_runs(path)
    at = AppTest.from_function(page, default_timeout=60)
    with file_size_limit(128 * 1024):
        at.run()
    assert not at.exception
    [warning] = at.warning
    assert warning.value.startswith("the run was measured but not saved: the disk under ATTN_HOME")
    assert [m.value for m in at.markdown] == ["saved as None"]
    assert saved_runs(path) == before
    at.run()  # room again: the same session saves
    assert not at.exception and not at.warning and [m.value for m in at.markdown] == ["saved as 4"]


# -- an ATTN_HOME that cannot be used ---------------------------------------------------------------

@pytest.fixture
def home_is_a_file(monkeypatch, tmp_path: Path) -> Path:
    """ATTN_HOME naming a regular file: unusable for every user, root included."""
    path = tmp_path / "attn-home"
    path.write_text("not a folder")
    monkeypatch.setenv("ATTN_HOME", str(path))
    return path


def test_an_attn_home_that_is_a_file_is_one_line_everywhere(home_is_a_file: Path, capsys) -> None:
    with pytest.raises(AttnHomeError, match=r"ATTN_HOME \(.*\) is a file, not a folder"):
        RunStore()
    code, out, err = cli("runs", "list", capsys=capsys)
    assert code == 2 and out == ""
    assert "is a file, not a folder; set ATTN_HOME to a folder" in one_error_line(err)
    code, _, err = cli("runs", "export", "1", capsys=capsys)
    assert code == 2 and "is a file, not a folder" in one_error_line(err)
    assert calibrate.cached("cpu") is None  # not calibrated: no number, and no crash
    with pytest.raises(AttnHomeError, match="is a file, not a folder"):
        calibrate._save(calibrate.Calibration("d", "t", {"float32": 1.0}, 1.0))
    assert home_is_a_file.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder all the same; the "
                    "ATTN_HOME-is-a-file test covers an unusable ATTN_HOME for root")
def test_an_unreadable_attn_home_is_one_line(capsys) -> None:
    store_with_runs(home() / "runs.sqlite")
    home().chmod(0)
    try:
        code, _, err = cli("runs", "list", capsys=capsys)
    finally:
        home().chmod(0o755)
    assert code == 2 and "run store" in one_error_line(err)


def test_the_runs_page_says_why_an_unusable_attn_home_cannot_be_opened(home_is_a_file: Path) -> None:
    at = open_app("views/runs.py")
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("The saved runs cannot be opened: cannot use")
    assert "is a file, not a folder" in error.value


# -- a corrupt calibration cache --------------------------------------------------------------------

def entry(**changes) -> dict:
    cal = {"device": calibrate.device_key("cpu"), "torch": "x", "matmul_tflops": {"float32": 0.5},
           "bandwidth_gbps": 10.0, "sizes": {}, "measured_at": "2026-01-01T00:00:00Z"}
    return {**cal, **changes}


def entry_file(**changes) -> str:
    cal = entry(**changes)
    return json.dumps({cal["device"]: cal})


CORRUPT = {
    "truncated": entry_file()[:40],
    "not an object": "[1, 2, 3]",
    "entry not an object": json.dumps({calibrate.device_key("cpu"): "fast"}),
    "unknown field": entry_file(bandwidth="10"),
    "bandwidth a string": entry_file(bandwidth_gbps="10"),
    "rates a list": entry_file(matmul_tflops=[0.5]),
    "rate a bool": entry_file(matmul_tflops={"float32": True}),
    "NaN bandwidth": entry_file(bandwidth_gbps=float("nan")),
    "infinite rate": entry_file(matmul_tflops={"float32": float("inf")}),
    "negative bandwidth": entry_file(bandwidth_gbps=-10.0),
    "zero rate": entry_file(matmul_tflops={"float32": 0.0}),
}


@pytest.fixture
def measured(monkeypatch):
    """Calibration without its seconds of matmuls and copies: the test is about the cache."""
    monkeypatch.setattr(calibrate, "matmul_tflops", lambda device, dtype, n: 0.25)
    monkeypatch.setattr(calibrate, "copy_gbps", lambda device, nbytes: 8.0)


UNREADABLE_FILES = ("truncated", "not an object")  # the rest are entries of a readable file


@pytest.mark.parametrize("case", CORRUPT)
def test_a_corrupt_calibration_is_ignored_with_a_warning_and_measured_again(case: str, measured) -> None:
    text = CORRUPT[case]
    cache = home() / "calibration.json"
    cache.write_text(text)
    with pytest.warns(CalibrationWarning, match="measured again"):
        assert calibrate.cached("cpu") is None  # never a wrong number used silently
    with pytest.warns(CalibrationWarning):
        cal = calibrate.calibrate("cpu")
    assert cal.bandwidth_gbps == 8.0 and cal.matmul_tflops["float32"] == 0.25
    assert calibrate.cached("cpu") == cal  # the new measurement is what is cached now
    # a file that could not be read at all is kept aside, never overwritten
    aside = [p for p in home().iterdir() if p.name.startswith("calibration.json.unreadable-")]
    assert [p.read_text() for p in aside] == ([text] if case in UNREADABLE_FILES else [])


@pytest.mark.usefixtures("in_process_jobs")
def test_calibrating_from_the_app_on_a_full_disk_is_a_message_and_the_page_goes_on(measured) -> None:
    cache = home() / "calibration.json"
    # other machines' calibrations, over 32 KiB, so that the run store's -shm file still fits
    others = [entry(device=f"machine {i} | torch 0") for i in range(200)]
    cache.write_text(json.dumps({cal["device"]: cal for cal in others}, indent=1))
    old = cache.read_bytes()
    assert len(old) > 32 * 1024
    at = open_app("views/overview.py")
    [button] = [b for b in at.button if b.label == "Calibrate this device"]
    with file_size_limit(len(old) + 64):  # the job runs on a thread of this process
        button.click().run()
        for _ in range(20):
            if at.error:
                break
            at.run()
    assert not at.exception
    assert len(at.error) == 1, [e.value for e in at.error]
    [error] = at.error
    assert error.value.startswith(f"Calibration: the disk under ATTN_HOME ({home()}) is full"), error.value
    assert cache.read_bytes() == old
    at.run()
    assert not at.exception and at.title


def test_the_cli_recalibrates_over_a_corrupt_cache(measured, capsys) -> None:
    (home() / "calibration.json").write_text(CORRUPT["NaN bandwidth"])
    with pytest.warns(CalibrationWarning, match="bandwidth_gbps is nan"):
        code, out, _ = cli("calibrate", "--device", "cpu", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["bandwidth_gbps"] == 8.0


def test_a_decode_floor_is_measured_when_the_calibration_cannot_be_cached(home_is_a_file, measured) -> None:
    from attn.decoding import floor_ms

    with pytest.warns(CalibrationWarning, match="measured but not cached"):
        assert floor_ms(8 * 10**6, "cpu") == pytest.approx(1.0)  # 8 MB at 8 GB/s


# -- a run store from a newer attn --------------------------------------------------------------------

@pytest.fixture
def newer_store() -> tuple[Path, bytes]:
    path = home() / "runs.sqlite"
    store_with_runs(path)
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    return path, path.read_bytes()


def test_a_newer_store_names_both_versions_and_is_not_written(newer_store, capsys) -> None:
    path, before = newer_store
    with pytest.raises(RunStoreError) as caught:
        RunStore(path)
    message = str(caught.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and f"({SCHEMA_VERSION})" in message
    assert "upgrade attn" in message
    for argv in (["runs", "list"], ["runs", "delete", "1"], ["runs", "export", "1"]):
        code, out, err = cli(*argv, capsys=capsys)
        assert code == 2 and out == "" and "upgrade attn" in one_error_line(err)
    assert path.read_bytes() == before
    assert sorted(p.name for p in home().iterdir()) == ["runs.sqlite"]


def test_the_runs_page_says_to_upgrade_for_a_newer_store(newer_store) -> None:
    path, before = newer_store
    at = open_app("views/runs.py")
    assert not at.exception
    [error] = at.error
    assert "upgrade attn" in error.value and f"schema version {SCHEMA_VERSION + 1}" in error.value
    assert path.read_bytes() == before
