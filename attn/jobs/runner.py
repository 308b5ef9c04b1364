"""The job runner: one FIFO queue, and the one worker process (or thread) that runs its jobs in
order; cancelling, restarting a worker that died, and the runner the app shares.

Jobs go to the worker and its messages come back as attn.jobs.codec bytes over the pipes'
`send_bytes`/`recv_bytes`, never pickled. (multiprocessing's spawn pickles the worker's start
arguments, two pipe ends, a shared integer and a tuple of module names, by itself: that is the
standard library's own start-up, not a channel for jobs.)
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import sys
import threading
import time
import traceback
import types
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from attn.jobs import codec
from attn.jobs.handle import JobHandle
from attn.jobs.worker import deliver, encoded, job_frame, one_line, run_job, worker_main


@dataclass(eq=False)
class _Job:
    handle: JobHandle
    payload: bytes  # codec.job_payload: snapshots the arguments at submit time
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_requested_at: float | None = None  # time.monotonic()
    hard_deadline: float | None = None  # time.monotonic() after which the worker is killed
    unreadable: str | None = None  # a message from the worker that could not be decoded

    @property
    def id(self) -> int:
        return self.handle.id


_RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()


class JobRunner:
    """One FIFO queue of jobs and the one worker (process, or thread) that runs them."""

    def __init__(self, *, in_process: bool = False, hard_cancel_after_s: float | None = 10.0,
                 keep_finished: int = 200):
        self.in_process = in_process
        # a job that ignores a cancel this long is stopped by killing its worker (process mode)
        self.hard_cancel_after_s = hard_cancel_after_s
        self.keep_finished = keep_finished
        self._lock = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        self._current: _Job | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        # worker process state, touched only by the supervisor thread (and shutdown, after it)
        self._proc: Any = None
        self._to_worker: Any = None
        self._from_worker: Any = None
        self._cancel_id: Any = None
        self._worker_allowed: tuple[str, ...] = ()  # codec.allowed_modules() when it started
        _RUNNERS.add(self)

    def __enter__(self) -> JobRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def worker_pid(self) -> int | None:
        proc = self._proc
        return None if proc is None else proc.pid

    @property
    def closed(self) -> bool:
        return self._closing

    def jobs(self) -> list[JobHandle]:
        """Handles still held, in submission order (the oldest finished ones are dropped)."""
        with self._lock:
            return [job.handle for job in self._jobs.values()]

    def get(self, job_id: int) -> JobHandle | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.handle

    def submit(self, fn: Callable[..., Any], *args: Any, kind: str = "job", title: str = "",
               **kwargs: Any) -> JobHandle:
        if not callable(fn):
            raise TypeError(f"a job must be a function, not {type(fn).__name__}")
        if getattr(fn, "__module__", None) == "__main__":
            # the worker never imports the main script (under Streamlit it is the page itself)
            raise TypeError(f"job function {getattr(fn, '__qualname__', fn)!r} is defined in the "
                            "main script; define it in an importable module")
        try:
            payload = codec.job_payload(fn, args, kwargs)
        except Exception as exc:
            raise TypeError(f"cannot send this job to the worker: {one_line(exc)} (the function "
                            "must be defined at module level, and its arguments JSON, arrays, "
                            "tensors or attn's dataclasses)") from exc
        with self._lock:
            if self._closing:
                raise RuntimeError("this JobRunner has been shut down")
            handle = JobHandle(next(self._ids), kind, title, self._cancel)
            job = _Job(handle, payload)
            self._queue.append(job)
            self._jobs[handle.id] = job
            self._forget_old()
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="attn-jobs", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return handle

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel what is queued, ask the running job to stop (killed after ``timeout`` s), stop
        the worker."""
        with self._lock:
            self._closing = True
            while self._queue:
                self._queue.popleft().handle._finish(
                    "cancelled", error="cancelled: the job runner was shut down", kind="cancelled")
            current = self._current
            if current is not None:
                self._request_cancel(current)
                deadline = time.monotonic() + timeout
                current.hard_deadline = min(current.hard_deadline or deadline, deadline)
            self._lock.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout + 5.0)

    # cancelling

    def _cancel(self, handle: JobHandle) -> bool:
        with self._lock:
            job = self._jobs.get(handle.id)
            if job is None or handle.done():
                return False
            if job in self._queue:
                self._queue.remove(job)
                handle._finish("cancelled", error="cancelled before it started", kind="cancelled")
                return True
            if job is self._current:
                self._request_cancel(job)
                if self.hard_cancel_after_s is not None and job.hard_deadline is None:
                    job.hard_deadline = time.monotonic() + self.hard_cancel_after_s
                return True
            return False

    def _request_cancel(self, job: _Job) -> None:
        job.handle.cancel_requested = True
        job.cancel_event.set()
        if job.cancel_requested_at is None:
            job.cancel_requested_at = time.monotonic()
        if self._cancel_id is not None:
            self._cancel_id.value = job.id

    def _forget_old(self) -> None:
        finished = [i for i, job in self._jobs.items() if job.handle.done()]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job_id]

    # the supervisor thread

    def _serve(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._lock.wait()
                    if not self._queue:
                        return
                    job = self._current = self._queue.popleft()
                try:
                    if self.in_process:
                        self._run_here(job)
                    else:
                        self._run_in_worker(job)
                except BaseException as exc:  # the supervisor must outlive any one job
                    job.handle._finish("failed", error=f"job runner error: {one_line(exc)}",
                                       detail=traceback.format_exc(), kind="exception")
                finally:
                    with self._lock:
                        self._current = None
        finally:
            if not self.in_process:
                self._stop_worker()

    def _apply(self, job: _Job, message: tuple) -> bool:
        """Apply one message about ``job``; True when it was the last one."""
        tag, handle = message[0], job.handle
        if message[1] != job.id:
            return False
        if tag == "started":
            handle._set_running()
        elif tag == "progress":
            handle._set_progress(message[2], message[3])
        elif tag == "partial":
            handle._add_partial(message[2])
        elif job.unreadable is not None and tag in ("done", "cancelled", "failed"):
            handle._finish("failed", error=job.unreadable, kind="exception")
            return True
        elif tag == "done":
            handle._finish("done", result=message[2])
            return True
        elif tag == "cancelled":
            handle._finish("cancelled", error=message[2], kind="cancelled")
            return True
        elif tag == "failed":
            handle._finish("failed", error=message[2], detail=message[3], kind=message[4])
            return True
        return False

    # in-process mode

    def _run_here(self, job: _Job) -> None:
        def post(message: tuple) -> None:
            # the worker's round trip, so that what could not reach a worker's caller fails here
            # too, and a result is a copy, as it would be from the worker
            self._apply(job, codec.loads(encoded(message)))

        deliver(run_job(job.id, job.payload, post, job.cancel_event.is_set), post)

    # process mode

    def _run_in_worker(self, job: _Job) -> None:
        # a worker killed while idle may still look alive for a moment and take the job into its
        # pipe: the job, never started, goes once more to the restarted worker (only once, so
        # a job whose loading kills the worker fails instead of killing workers for ever)
        for attempt in (1, 2):
            self._send(job)
            if self._follow(job, may_resend=attempt == 1) != "resend":
                return

    def _send(self, job: _Job) -> None:
        for attempt in (1, 2):
            # a worker killed a moment ago closes its pipe before it stops looking alive, so a
            # broken pipe restarts it whatever is_alive() says; a worker started before a job
            # module was allowed is restarted too (it learns the allowed modules at start)
            if (attempt == 2 or self._proc is None or not self._proc.is_alive()
                    or self._worker_allowed != codec.allowed_modules()):
                self._restart_worker()
            try:
                self._to_worker.send_bytes(job_frame(job.id, job.payload))
                return
            except OSError:  # it died while idle, between jobs
                if attempt == 2:
                    raise

    def _follow(self, job: _Job, may_resend: bool = False) -> str | None:
        """Follow the job to its end; "resend" when its worker died before starting it."""
        proc, conn = self._proc, self._from_worker
        while True:
            if job.hard_deadline is None:
                timeout = 0.5  # wake up now and then to notice a cancel's deadline
            else:
                timeout = min(0.1, max(0.0, job.hard_deadline - time.monotonic()))
            ready = multiprocessing.connection.wait([conn, proc.sentinel], timeout)
            if conn in ready:
                got = self._read(job, conn)
                if got == "last":
                    if job.handle.error_kind == "device_fault":
                        self._restart_worker()  # it exits by itself after a device fault
                    return
                if got == "ok":
                    continue
            if ready:  # end of file, or the process is gone
                return self._worker_gone(job, proc, conn, may_resend)
            if job.hard_deadline is not None and time.monotonic() >= job.hard_deadline:
                proc.kill()
                proc.join(5.0)
                waited = time.monotonic() - (job.cancel_requested_at or time.monotonic())
                again = "" if self._closing else " and restarted"
                if not self._closing:
                    self._restart_worker()
                job.handle._finish("cancelled", error=f"cancelled: the job did not stop within "
                                   f"{waited:.1f} s of the cancel, so its worker process was "
                                   f"killed{again}", kind="cancelled")
                return

    def _worker_gone(self, job: _Job, proc: Any, conn: Any, may_resend: bool) -> str | None:
        with contextlib.suppress(OSError):
            while conn.poll() and self._read(job, conn) == "ok":
                pass  # what it sent before it died
        proc.join(5.0)
        if not self._closing:
            self._restart_worker()
        if job.handle.done():  # it died after its last word
            return None
        if (may_resend and job.handle.started_at is None and not self._closing
                and not job.cancel_event.is_set()):
            return "resend"
        code = proc.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        when = "while running this job" if job.handle.started_at else "before this job started"
        again = "" if self._closing else "; it was restarted"
        job.handle._finish("failed", error=f"the worker process died ({how}) {when}{again}",
                           kind="worker_died")
        return None

    def _read(self, job: _Job, conn: Any) -> str:
        """Read one message: "last" (the job ended), "ok", or "eof" (the worker is gone)."""
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return "eof"
        try:
            message = codec.loads(data)
        except Exception as exc:
            job.unreadable = f"could not read what the job sent back: {one_line(exc)}"
            return "ok"
        return "last" if self._apply(job, message) else "ok"

    def _restart_worker(self) -> None:
        self._stop_worker()
        ctx = multiprocessing.get_context("spawn")
        if self._cancel_id is None:
            # the id of the job asked to stop; ids are never reused, so it never needs clearing
            self._cancel_id = ctx.Value("q", 0, lock=False)
            with self._lock:
                if self._current is not None and self._current.cancel_event.is_set():
                    self._cancel_id.value = self._current.id
        jobs_r, jobs_w = ctx.Pipe(duplex=False)
        results_r, results_w = ctx.Pipe(duplex=False)
        self._worker_allowed = codec.allowed_modules()
        proc = ctx.Process(target=worker_main, args=(jobs_r, results_w, self._cancel_id, self._worker_allowed),
                           name="attn-jobs-worker")
        with _main_module_hidden():
            proc.start()
        jobs_r.close()
        results_w.close()  # so that its death reads as end-of-file here
        self._proc, self._to_worker, self._from_worker = proc, jobs_w, results_r

    def _stop_worker(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            self._to_worker.send_bytes(b"")
        proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        for conn in (self._to_worker, self._from_worker):
            conn.close()
        self._proc = self._to_worker = self._from_worker = None


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawn runs the parent's ``__main__`` again in the child. Under Streamlit that is the page
    script, so the worker would run the whole app; a bare module in its place is skipped."""
    with _START_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


# the one runner the app shares across browser sessions

_default: JobRunner | None = None
_default_lock = threading.Lock()


def default_runner() -> JobRunner:
    """The process-wide runner (a worker process). Created on first use; its worker on first
    submit."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = JobRunner()
        return _default


def set_default_runner(runner: JobRunner | None) -> None:
    """Put another runner behind ``default_runner()``, e.g. ``JobRunner(in_process=True)`` in
    tests of the app. ``None`` makes the next call create a fresh one."""
    global _default
    with _default_lock:
        _default = runner


@atexit.register
def _shutdown_all() -> None:
    for runner in list(_RUNNERS):
        with contextlib.suppress(Exception):
            runner.shutdown(timeout=2.0)
