"""A job as the runner holds it from submit to its end: the caller's handle, the payload sent to
the worker, and the state of a cancel (when it was asked for, when the worker gets killed)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from attn.jobs.handle import JobHandle


@dataclass(eq=False)
class QueuedJob:
    handle: JobHandle
    payload: bytes  # codec.job_payload: snapshots the arguments at submit time
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_requested_at: float | None = None  # time.monotonic()
    hard_deadline: float | None = None  # time.monotonic() after which the worker is killed
    unreadable: str | None = None  # a message from the worker that could not be decoded

    @property
    def id(self) -> int:
        return self.handle.id
