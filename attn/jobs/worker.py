"""The worker's side of a job: run it, turn what it raised into one line a person can read
(out of memory is a result, "does not fit: ..."), and send its messages back. The same code runs
in the worker process and, for tests, on a thread of the caller's process.

Jobs and messages cross as bytes of attn.jobs.codec (JSON), sent with `send_bytes` and read with
`recv_bytes`: a Connection's `send` and `recv` would pickle them.
"""
from __future__ import annotations

import contextlib
import gc
import signal
import struct
import sys
import threading
import traceback
from typing import Any, Callable

from attn.device import is_out_of_memory, oom_message
from attn.heap import return_freed_memory
from attn.home import AttnHomeError
from attn.jobs import codec
from attn.jobs.handle import JobCancelled, Report

_MESSAGE_CHARS = 300
_JOB_ID = struct.Struct("!q")  # a job's frame to the worker: its id, then codec.job_payload's bytes


def run_job(job_id: int, payload: bytes, post: Callable[[tuple], None],
            is_cancelled: Callable[[], bool]) -> tuple:
    """Run one job and return its last message; progress and partials go out through ``post``."""
    if is_cancelled():
        return ("cancelled", job_id, "cancelled before it started")
    try:
        fn, args, kwargs = codec.load_job(payload)
    except BaseException as exc:
        return ("failed", job_id, f"could not load the job: {one_line(exc)}",
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
            outcome = ("failed", job_id, f"{one_line(exc)}; the device cannot be used again in "
                       "that process, so the worker is restarted", detail, "device_fault")
        else:
            outcome = ("failed", job_id, one_line(exc), detail, "exception")
    else:
        outcome = ("cancelled", job_id, "cancelled") if report.saw_cancel else ("done", job_id, result)
        del result
    if oom:
        # only now: the exception's frames held the tensors, and leaving except dropped them
        _release_device_memory()
    return outcome


def encoded(message: tuple) -> bytes:
    try:
        return codec.dumps(message)
    except Exception as exc:
        what = {"done": "result", "partial": "partial item"}.get(message[0], "message")
        raise TypeError(f"the job's {what} cannot be sent back: {one_line(exc)}") from exc


def deliver(outcome: tuple, post: Callable[[tuple], None]) -> None:
    try:
        post(outcome)
    except TypeError as exc:  # a result that cannot be encoded fails the job, not the worker
        post(("failed", outcome[1], str(exc), traceback.format_exc(), "exception"))


def job_frame(job_id: int, payload: bytes) -> bytes:
    """What the runner sends the worker for one job (b"" asks it to stop)."""
    return _JOB_ID.pack(job_id) + payload


def worker_main(jobs: Any, results: Any, cancel_id: Any, allowed: tuple[str, ...] = ()) -> None:
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when we stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in allowed:  # what the parent allowed beyond attn's modules (tests' job functions)
        codec.allow_module(module)
    send_lock = threading.Lock()  # a job may report from threads of its own

    def post(message: tuple) -> None:
        data = encoded(message)
        with send_lock:
            results.send_bytes(data)

    while True:
        try:
            frame = jobs.recv_bytes()
        except (EOFError, OSError):  # the parent is gone
            return
        if len(frame) < _JOB_ID.size:
            return
        (job_id,), payload = _JOB_ID.unpack_from(frame), frame[_JOB_ID.size:]
        # the cancel check is called only inside run_job, during this job
        outcome = run_job(job_id, payload, post, lambda: cancel_id.value == job_id)  # noqa: B023
        deliver(outcome, post)
        if outcome[0] == "failed" and outcome[4] == "device_fault":
            return
        del outcome
        return_freed_memory()  # the worker lives as long as the server: keep it at what it uses


# errors: one line a person can read, and which of them break the device for good (which of
# them are "does not fit" is attn.device.is_out_of_memory)

def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    if isinstance(exc, KeyError) and len(first) > 1 and first[0] == first[-1] == "'":
        first = f"missing key {first}"
    # ValueError carries the spec's messages, and AttnHomeError says what to do about ATTN_HOME
    # (a full disk, not a folder): both are written to be shown as they are
    line = first if isinstance(exc, (ValueError, AttnHomeError)) and first else (
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
