"""The job runner: one FIFO queue, and the one worker process (or thread) that runs its jobs in
order; cancelling, and the runner the app shares. Sending a job to the worker process, following
it and restarting that process are `worker_process.py`'s (JobRunner's process mode).
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import threading
import time
import traceback
import weakref
from collections import deque
from typing import Any, Callable

from attn.jobs import codec
from attn.jobs.handle import JobHandle
from attn.jobs.queued import QueuedJob
from attn.jobs.worker import deliver, encoded, one_line, run_job
from attn.jobs.worker_process import WorkerProcessMixin


_RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()


class JobRunner(WorkerProcessMixin):
    """One FIFO queue of jobs and the one worker (process, or thread) that runs them."""

    def __init__(self, *, in_process: bool = False, hard_cancel_after_s: float | None = 10.0,
                 keep_finished: int = 200):
        self.in_process = in_process
        # a job that ignores a cancel this long is stopped by killing its worker (process mode)
        self.hard_cancel_after_s = hard_cancel_after_s
        self.keep_finished = keep_finished
        self._lock = threading.Condition()
        self._queue: deque[QueuedJob] = deque()
        self._jobs: dict[int, QueuedJob] = {}
        self._ids = itertools.count(1)
        self._current: QueuedJob | None = None
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
            job = QueuedJob(handle, payload)
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

    def _request_cancel(self, job: QueuedJob) -> None:
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

    def _apply(self, job: QueuedJob, message: tuple) -> bool:
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

    def _run_here(self, job: QueuedJob) -> None:
        def post(message: tuple) -> None:
            # the worker's round trip, so that what could not reach a worker's caller fails here
            # too, and a result is a copy, as it would be from the worker
            self._apply(job, codec.loads(encoded(message)))

        deliver(run_job(job.id, job.payload, post, job.cancel_event.is_set), post)


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
