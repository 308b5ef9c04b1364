"""Run work off the UI thread: one worker process, a FIFO queue, progress, partial results, cancel.

A job is a module-level function ``fn(*args, report, **kwargs)``. It talks back through
``report``: ``report.progress(fraction, message)``, ``report.partial(item)`` (streams one item,
such as one sweep point, to the caller at once) and ``report.cancelled()`` (cooperative cancel).
Its return value is the result.

    runner = default_runner()
    handle = runner.submit(sweep, spec, kind="sweep", title="dense vs sdpa")
    handle.progress            # Progress(fraction=0.4, message="seq 2048")
    handle.new_partials(3)     # items produced since the caller last looked
    handle.result(timeout=60)  # the return value, or JobFailed / JobCancelled

Every job runs in ONE worker process, one job at a time, in submission order, so timings from
several browser sessions never overlap. The worker is started with "spawn" (CUDA does not survive
fork) and restarted when it dies; the job it was running fails with a one-line message and the
queue carries on. An out-of-memory error is a result ("does not fit: ..."), not a crash.

``JobRunner(in_process=True)`` runs the same API on a thread of this process, for tests and for
Streamlit's AppTest; it cannot isolate faults or kill a job that ignores a cancel.

This module imports nothing outside the standard library (and attn.device, which imports none
either): torch is only touched in the worker, and only when a job has already imported it.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import itertools
import math
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import sys
import threading
import time
import traceback
import types
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

from attn.device import is_out_of_memory, oom_message

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})

# error_kind values a caller can branch on (the UI shows "oom" as a result, not an error)
ERROR_KINDS = ("exception", "oom", "device_fault", "worker_died", "cancelled")

_PICKLE = pickle.HIGHEST_PROTOCOL
_MESSAGE_CHARS = 300


class JobError(Exception):
    """A job gave no result. ``str()`` is the one-line message; ``detail`` the traceback."""

    def __init__(self, message: str, detail: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.detail = detail
        self.kind = kind


class JobFailed(JobError):
    """The job raised, ran out of memory, or its worker process died."""


class JobCancelled(JobError):
    """The job was cancelled. A job function may raise it itself (``report.raise_if_cancelled``)."""

    def __init__(self, message: str = "cancelled", detail: str | None = None,
                 kind: str | None = "cancelled"):
        super().__init__(message, detail, kind)


class Progress(NamedTuple):
    fraction: float
    message: str


class Report:
    """What a job function gets as ``report``: its only channel back to the caller."""

    def __init__(self, post: Callable[[tuple], None], is_cancelled: Callable[[], bool], job_id: int):
        self._post = post
        self._is_cancelled = is_cancelled
        self.job_id = job_id
        # set once the job has seen the cancel: a job that then returns normally ends "cancelled"
        self.saw_cancel = False

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = float(fraction)
        fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
        self._post(("progress", self.job_id, fraction, str(message)))

    def partial(self, item: Any) -> None:
        self._post(("partial", self.job_id, item))

    def cancelled(self) -> bool:
        if self._is_cancelled():
            self.saw_cancel = True
        return self.saw_cancel

    def raise_if_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled()


class JobHandle:
    """The caller's view of one job. Safe to read from any thread; updated by the runner."""

    def __init__(self, job_id: int, kind: str, title: str, runner: JobRunner):
        self.id = job_id
        self.kind = kind
        self.title = title
        self.error: str | None = None
        self.error_detail: str | None = None
        self.error_kind: str | None = None
        self.submitted_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.cancel_requested = False
        self._runner = runner
        self._cond = threading.Condition()
        self._status = "queued"
        self._progress = Progress(0.0, "queued")
        self._items: list[Any] = []
        self._result: Any = None

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.kind} {self._status} {self.title!r}>"

    @property
    def status(self) -> str:
        return self._status

    @property
    def progress(self) -> Progress:
        return self._progress

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at

    def done(self) -> bool:
        return self._status in FINISHED

    def partials(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def new_partials(self, since_index: int) -> list[Any]:
        """Items produced from index ``since_index`` on: pass ``len`` of what you already hold."""
        with self._cond:
            return self._items[since_index:]

    def cancel(self) -> bool:
        """Queued: it never runs. Running: ask it to stop. False when it had already finished."""
        return self._runner._cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(self.done, timeout)

    def result(self, timeout: float | None = None) -> Any:
        if not self.wait(timeout):
            raise TimeoutError(f"job {self.id} ({self.title or self.kind}) is still {self._status}")
        if self._status == "done":
            return self._result
        cls = JobCancelled if self._status == "cancelled" else JobFailed
        raise cls(self.error or self._status, self.error_detail, self.error_kind)

    # updates, called by the runner only

    def _set_running(self) -> None:
        with self._cond:
            if self._status == "queued":
                self.started_at = time.time()
                self._status = "running"
                self._progress = Progress(0.0, "running")

    def _set_progress(self, fraction: float, message: str) -> None:
        with self._cond:
            self._progress = Progress(fraction, message)

    def _add_partial(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)

    def _finish(self, status: str, result: Any = None, error: str | None = None,
                detail: str | None = None, kind: str | None = None) -> None:
        with self._cond:
            if self._status in FINISHED:
                return
            self._result = result
            self.error, self.error_detail, self.error_kind = error, detail, kind
            self.finished_at = time.time()
            if status == "done":
                self._progress = Progress(1.0, self._progress.message)
            self._status = status
            self._cond.notify_all()


@dataclass(eq=False)
class _Job:
    handle: JobHandle
    payload: bytes  # pickled (fn, args, kwargs): snapshots the arguments at submit time
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_requested_at: float | None = None  # time.monotonic()
    hard_deadline: float | None = None  # time.monotonic() after which the worker is killed
    unreadable: str | None = None  # a message from the worker that could not be unpickled

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
            payload = pickle.dumps((fn, args, kwargs), protocol=_PICKLE)
        except Exception as exc:
            raise TypeError(f"cannot send this job to the worker: {_one_line(exc)} (the function "
                            "must be defined at module level and its arguments picklable)") from exc
        with self._lock:
            if self._closing:
                raise RuntimeError("this JobRunner has been shut down")
            handle = JobHandle(next(self._ids), kind, title, self)
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
                    job.handle._finish("failed", error=f"job runner error: {_one_line(exc)}",
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
            # a pickle round trip, so that what could not reach a worker's caller fails here too
            self._apply(job, pickle.loads(_pickled(message)))

        _deliver(_run_job(job.id, job.payload, post, job.cancel_event.is_set), post)

    # process mode

    def _run_in_worker(self, job: _Job) -> None:
        for attempt in (1, 2):
            if self._proc is None or not self._proc.is_alive():
                self._restart_worker()
            try:
                self._to_worker.send((job.id, job.payload))
                break
            except OSError:  # it died while idle, between jobs
                if attempt == 2:
                    raise
        self._follow(job)

    def _follow(self, job: _Job) -> None:
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
                self._worker_gone(job, proc, conn)
                return
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

    def _worker_gone(self, job: _Job, proc: Any, conn: Any) -> None:
        with contextlib.suppress(OSError):
            while conn.poll() and self._read(job, conn) == "ok":
                pass  # what it sent before it died
        proc.join(5.0)
        if not self._closing:
            self._restart_worker()
        if job.handle.done():  # it died after its last word
            return
        code = proc.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        when = "while running this job" if job.handle.started_at else "before this job started"
        again = "" if self._closing else "; it was restarted"
        job.handle._finish("failed", error=f"the worker process died ({how}) {when}{again}",
                           kind="worker_died")

    def _read(self, job: _Job, conn: Any) -> str:
        """Read one message: "last" (the job ended), "ok", or "eof" (the worker is gone)."""
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return "eof"
        try:
            message = pickle.loads(data)
        except Exception as exc:
            job.unreadable = f"could not read what the job sent back: {_one_line(exc)}"
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
        proc = ctx.Process(target=_worker_main, args=(jobs_r, results_w, self._cancel_id),
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
            self._to_worker.send(None)
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


# the job itself, in the worker process (or on the in-process thread)

def _run_job(job_id: int, payload: bytes, post: Callable[[tuple], None],
             is_cancelled: Callable[[], bool]) -> tuple:
    """Run one job and return its last message; progress and partials go out through ``post``."""
    if is_cancelled():
        return ("cancelled", job_id, "cancelled before it started")
    try:
        fn, args, kwargs = pickle.loads(payload)
    except BaseException as exc:
        return ("failed", job_id, f"could not load the job: {_one_line(exc)}",
                traceback.format_exc(), "exception")
    report = Report(post, is_cancelled, job_id)
    post(("started", job_id))
    oom = False
    try:
        result = fn(*args, report=report, **kwargs)
    except JobCancelled as exc:
        outcome: tuple = ("cancelled", job_id, str(exc) or "cancelled")
    except BaseException as exc:
        detail = "".join(traceback.format_exception(exc))
        oom = is_out_of_memory(exc)
        if report.saw_cancel:
            outcome = ("cancelled", job_id, "cancelled")
        elif oom:
            outcome = ("failed", job_id, oom_message(exc), detail, "oom")
        elif _is_device_fault(exc):
            outcome = ("failed", job_id, f"{_one_line(exc)}; the device cannot be used again in "
                       "that process, so the worker is restarted", detail, "device_fault")
        else:
            outcome = ("failed", job_id, _one_line(exc), detail, "exception")
    else:
        outcome = ("cancelled", job_id, "cancelled") if report.saw_cancel else ("done", job_id, result)
        del result
    if oom:
        # only now: the exception's frames held the tensors, and leaving except dropped them
        _release_device_memory()
    return outcome


def _pickled(message: tuple) -> bytes:
    try:
        return pickle.dumps(message, protocol=_PICKLE)
    except Exception as exc:
        what = {"done": "result", "partial": "partial item"}.get(message[0], "message")
        raise TypeError(f"the job's {what} cannot be sent back: {_one_line(exc)}") from exc


def _deliver(outcome: tuple, post: Callable[[tuple], None]) -> None:
    try:
        post(outcome)
    except TypeError as exc:  # an unpicklable result fails the job, not the worker
        post(("failed", outcome[1], str(exc), traceback.format_exc(), "exception"))


def _worker_main(jobs: Any, results: Any, cancel_id: Any) -> None:
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when we stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()  # a job may report from threads of its own

    def post(message: tuple) -> None:
        data = _pickled(message)
        with send_lock:
            results.send_bytes(data)

    while True:
        try:
            message = jobs.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        job_id, payload = message
        outcome = _run_job(job_id, payload, post, lambda: cancel_id.value == job_id)
        _deliver(outcome, post)
        if outcome[0] == "failed" and outcome[4] == "device_fault":
            return


# errors: one line a person can read, and which of them break the device for good (which of
# them are "does not fit" is attn.device.is_out_of_memory)

def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    if isinstance(exc, KeyError) and len(first) > 1 and first[0] == first[-1] == "'":
        first = f"missing key {first}"
    # ValueError carries the spec's messages, which are written to be shown as they are
    line = first if isinstance(exc, ValueError) and first else (
        f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 3] + "..."


def _is_device_fault(exc: BaseException) -> bool:
    """Errors after which the CUDA context is broken for good: only a new process recovers."""
    torch = sys.modules.get("torch")
    fault_type = getattr(torch, "AcceleratorError", None)
    if fault_type is not None and isinstance(exc, fault_type):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("CUDA error" in text or "device-side assert" in text)


def _release_device_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    with contextlib.suppress(Exception):
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


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
