"""What a job's caller and the job itself hold: the handle (status, progress, partial items,
the result or the error), the job's `report` channel back, and the errors a result raises."""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, NamedTuple

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})

# error_kind values a caller can branch on (the UI shows "oom" as a result, not an error)
ERROR_KINDS = ("exception", "oom", "device_fault", "worker_died", "cancelled")


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

    def __init__(self, job_id: int, kind: str, title: str, cancel: Callable[[JobHandle], bool]):
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
        self._cancel_job = cancel  # the runner's
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
        return self._cancel_job(self)

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
