"""JobRunner's process mode: a job sent to the one worker process, its messages followed to the
job's end, and that process started (with "spawn", the page script hidden from it), restarted
when it dies or must be killed, and stopped.

Jobs go to the worker and its messages come back as attn.jobs.codec bytes over the pipes'
`send_bytes`/`recv_bytes`, never pickled. (multiprocessing's spawn pickles the worker's start
arguments, two pipe ends, a shared integer and a tuple of module names, by itself: that is the
standard library's own start-up, not a channel for jobs.)
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import sys
import threading
import time
import types
from typing import Any, Callable, Iterator

from attn.jobs import codec
from attn.jobs.queued import QueuedJob
from attn.jobs.worker import job_frame, one_line, worker_main


class WorkerProcessMixin:
    """The worker-process half of JobRunner, which holds the state and calls these from its
    supervisor thread (and shutdown, after it)."""

    # the runner's, read here
    _lock: threading.Condition
    _current: QueuedJob | None
    _closing: bool
    # the worker process, its two pipe ends, the shared id of the job asked to stop, and
    # codec.allowed_modules() when it started
    _proc: Any
    _to_worker: Any
    _from_worker: Any
    _cancel_id: Any
    _worker_allowed: tuple[str, ...]
    _apply: Callable[[QueuedJob, tuple], bool]  # JobRunner's: one message applied to the job's handle

    def _run_in_worker(self, job: QueuedJob) -> None:
        # a worker killed while idle may still look alive for a moment and take the job into its
        # pipe: the job, never started, goes once more to the restarted worker (only once, so
        # a job whose loading kills the worker fails instead of killing workers for ever)
        for attempt in (1, 2):
            self._send(job)
            if self._follow(job, may_resend=attempt == 1) != "resend":
                return

    def _send(self, job: QueuedJob) -> None:
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

    def _follow(self, job: QueuedJob, may_resend: bool = False) -> str | None:
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

    def _worker_gone(self, job: QueuedJob, proc: Any, conn: Any, may_resend: bool) -> str | None:
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

    def _read(self, job: QueuedJob, conn: Any) -> str:
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
