"""attn.jobs: work runs off the caller's thread, in one worker process, in submission order."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from attn.jobs import (JobCancelled, JobFailed, JobRunner, Progress, default_runner,
                       set_default_runner)
from tests import jobfns

WAIT_S = 20.0  # a bound for liveness on a busy machine, not a timing under test


def wait_until(check, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def worker_runner():
    with JobRunner() as runner:
        yield runner


@pytest.fixture(scope="module")
def thread_runner():
    with JobRunner(in_process=True) as runner:
        yield runner


@pytest.fixture(params=["process", "thread"])
def runner(request):
    """The tests of the API run against both modes: they must behave the same."""
    return request.getfixturevalue(f"{'worker' if request.param == 'process' else 'thread'}_runner")


def test_importing_jobs_does_not_import_torch():
    code = "import sys, attn.jobs; print('torch' in sys.modules)"
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo)
    assert out.stdout.strip() == "False"


def test_a_job_runs_in_the_worker_process(worker_runner):
    handle = worker_runner.submit(jobfns.add, 2, b=3, kind="demo", title="two plus three")
    result = handle.result(timeout=WAIT_S)
    assert result["sum"] == 5
    assert result["pid"] != os.getpid() and result["pid"] == worker_runner.worker_pid
    assert (handle.status, handle.kind, handle.title, handle.error) == ("done", "demo", "two plus three", None)
    assert handle.done() and handle.progress.fraction == 1.0
    assert handle.submitted_at <= handle.started_at <= handle.finished_at
    assert worker_runner.get(handle.id) is handle and handle in worker_runner.jobs()


def test_in_process_mode_runs_on_a_thread_of_this_process(thread_runner):
    assert thread_runner.submit(jobfns.add, 1, 1).result(timeout=WAIT_S)["pid"] == os.getpid()
    assert thread_runner.worker_pid is None


def test_progress_and_partials_arrive_before_the_job_ends(runner, tmp_path):
    gate = tmp_path / "gate"
    handle = runner.submit(jobfns.stream, 5, str(gate), kind="sweep")
    wait_until(lambda: len(handle.partials()) == 5)
    # every point is visible while the job is still running (it waits for the gate)
    assert handle.status == "running" and not handle.done()
    assert handle.progress == Progress(1.0, "point 5 of 5")
    assert handle.partials()[0] == {"i": 0, "square": 0}
    assert handle.new_partials(3) == [{"i": 3, "square": 9}, {"i": 4, "square": 16}]
    assert handle.new_partials(5) == []
    gate.touch()
    assert handle.result(timeout=WAIT_S) == {"points": 5}


def test_a_cancelled_queued_job_never_runs(runner, tmp_path):
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    blocker = runner.submit(jobfns.stream, 1, str(gate))
    queued = runner.submit(jobfns.writes_marker, str(marker))
    assert queued.status == "queued"
    assert queued.cancel() is True
    assert queued.status == "cancelled" and queued.started_at is None
    gate.touch()
    blocker.result(timeout=WAIT_S)
    assert runner.submit(jobfns.add, 1, 2).result(timeout=WAIT_S)["sum"] == 3
    assert not marker.exists()
    with pytest.raises(JobCancelled, match="before it started"):
        queued.result()


def test_a_running_job_stops_when_cancelled(runner):
    handle = runner.submit(jobfns.until_cancelled)
    wait_until(lambda: len(handle.partials()) >= 2)
    pid = runner.worker_pid
    assert handle.cancel() is True and handle.cancel_requested
    with pytest.raises(JobCancelled):
        handle.result(timeout=WAIT_S)
    assert handle.status == "cancelled" and handle.error == "cancelled"
    assert runner.worker_pid == pid  # it stopped by itself: nothing was killed
    assert handle.partials()[:2] == [{"step": 0}, {"step": 1}]  # what it produced is kept
    assert handle.cancel() is False


def test_an_exception_is_a_failed_job_with_its_message(runner):
    handle = runner.submit(jobfns.fails, "heads (12) must be a multiple of kv_heads (5)")
    with pytest.raises(JobFailed, match=r"heads \(12\) must be a multiple of kv_heads \(5\)") as info:
        handle.result(timeout=WAIT_S)
    assert handle.status == "failed" and handle.error_kind == "exception"
    assert handle.error == "heads (12) must be a multiple of kv_heads (5)"
    assert "Traceback" in handle.error_detail and "ValueError" in handle.error_detail
    assert info.value.detail == handle.error_detail
    assert runner.submit(jobfns.add, 1, 2).result(timeout=WAIT_S)["sum"] == 3


def test_running_out_of_host_memory_does_not_fit(runner):
    handle = runner.submit(jobfns.cpu_oom)
    with pytest.raises(JobFailed, match="does not fit: out of memory on cpu"):
        handle.result(timeout=WAIT_S)
    assert handle.error_kind == "oom"


def test_torch_out_of_memory_is_a_result_not_a_crash(worker_runner):
    pid = worker_runner.submit(jobfns.add, 0, 0).result(timeout=WAIT_S)["pid"]
    handle = worker_runner.submit(jobfns.torch_oom)
    with pytest.raises(JobFailed):
        handle.result(timeout=WAIT_S)
    assert handle.error == "does not fit: out of memory on cuda:0 (tried to allocate 20.00 GiB)"
    assert handle.error_kind == "oom" and "OutOfMemoryError" in handle.error_detail
    assert worker_runner.submit(jobfns.add, 0, 0).result(timeout=WAIT_S)["pid"] == pid


def test_jobs_from_several_threads_run_in_submission_order(runner):
    threads, per_thread = 4, 6
    barrier = threading.Barrier(threads)
    handles: dict[int, list] = {}

    def submit_some(t: int) -> None:
        barrier.wait()
        handles[t] = [runner.submit(jobfns.in_order, f"{t}-{i}") for i in range(per_thread)]

    workers = [threading.Thread(target=submit_some, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    everything = sorted((h for hs in handles.values() for h in hs), key=lambda h: h.id)
    results = [h.result(timeout=WAIT_S) for h in everything]
    calls = [r["call"] for r in results]
    # globally: ids are the order of submission, and the worker saw the calls in that order
    assert calls == sorted(calls) and len(set(calls)) == len(calls) == threads * per_thread
    assert len({r["pid"] for r in results}) == 1
    for hs in handles.values():
        tags = [h.result()["tag"] for h in sorted(hs, key=lambda h: h.result()["call"])]
        assert tags == [h.result()["tag"] for h in hs]  # each thread's jobs in its own order


def test_a_killed_worker_fails_its_job_and_the_queue_goes_on(worker_runner):
    victim = worker_runner.submit(jobfns.until_cancelled)
    following = worker_runner.submit(jobfns.add, 20, 22)
    wait_until(lambda: victim.status == "running")
    pid = worker_runner.worker_pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(JobFailed, match=r"the worker process died \(signal 9\) while running this "
                                        r"job; it was restarted"):
        victim.result(timeout=WAIT_S)
    assert victim.status == "failed" and victim.error_kind == "worker_died"
    result = following.result(timeout=WAIT_S)
    assert result["sum"] == 42 and result["pid"] != pid
    assert result["pid"] == worker_runner.worker_pid


def test_a_job_deaf_to_cancel_is_killed_after_a_grace_period(worker_runner, monkeypatch):
    monkeypatch.setattr(worker_runner, "hard_cancel_after_s", 0.2)
    deaf = worker_runner.submit(jobfns.ignores_cancel, 60.0)
    wait_until(lambda: deaf.status == "running")
    pid = worker_runner.worker_pid
    deaf.cancel()
    with pytest.raises(JobCancelled, match="did not stop within .* killed and restarted"):
        deaf.result(timeout=WAIT_S)
    assert deaf.status == "cancelled"
    assert worker_runner.submit(jobfns.add, 1, 1).result(timeout=WAIT_S)["pid"] != pid


def test_a_device_fault_restarts_the_worker(worker_runner):
    pid = worker_runner.submit(jobfns.add, 0, 0).result(timeout=WAIT_S)["pid"]
    handle = worker_runner.submit(jobfns.cuda_fault)
    with pytest.raises(JobFailed, match="illegal memory access"):
        handle.result(timeout=WAIT_S)
    assert handle.error_kind == "device_fault"
    assert worker_runner.submit(jobfns.add, 0, 0).result(timeout=WAIT_S)["pid"] != pid


def test_what_cannot_reach_the_worker_is_refused_or_fails(runner):
    with pytest.raises(TypeError, match="module level"):
        runner.submit(lambda report: None)
    in_main = types.FunctionType(jobfns.add.__code__, {}, "add")
    in_main.__module__ = "__main__"
    with pytest.raises(TypeError, match="main script"):
        runner.submit(in_main, 1, 2)
    handle = runner.submit(jobfns.unsendable_partial)
    with pytest.raises(JobFailed, match="partial item cannot be sent back"):
        handle.result(timeout=WAIT_S)


def test_shutdown_cancels_and_the_main_script_is_not_rerun(tmp_path, monkeypatch):
    # Streamlit puts the page script in sys.modules["__main__"]; spawn would run it again
    marker = tmp_path / "main-ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)

    with JobRunner() as runner:
        running = runner.submit(jobfns.until_cancelled)
        queued = runner.submit(jobfns.add, 1, 2)
        wait_until(lambda: running.status == "running")
        pid = runner.worker_pid
    assert (running.status, queued.status) == ("cancelled", "cancelled")
    assert "shut down" in queued.error
    assert runner.worker_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not marker.exists()
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit(jobfns.add, 1, 2)


def test_the_app_shares_one_lazily_started_runner():
    try:
        shared = default_runner()
        assert default_runner() is shared and not shared.in_process
        assert shared.worker_pid is None  # no process until the first job
        stand_in = JobRunner(in_process=True)
        set_default_runner(stand_in)
        assert default_runner() is stand_in
    finally:
        set_default_runner(None)


def test_attns_own_does_not_fit_is_an_oom_result_with_its_message():
    with JobRunner(in_process=True) as runner:
        handle = runner.submit(jobfns.refuse_as_too_big)
        handle.wait(10)
    assert handle.status == "failed" and handle.error_kind == "oom"
    assert handle.error.startswith("does not fit: dense at seq 1000000 needs")
