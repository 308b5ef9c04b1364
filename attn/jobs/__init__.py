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

The handle and the report are in `handle.py`, the queue in `runner.py` (a job as it holds it in
`queued.py`), starting, following and restarting the worker process in `worker_process.py`,
what runs a job and reports its outcome in `worker.py`, and how jobs and results cross (JSON,
never pickle: a job is a function of attn's modules named by its module and name) in `codec.py`.

This package imports nothing outside the standard library (and attn.device and attn.home, which import none
either): torch is only touched in the worker, and only when a job has already imported it.
"""

from attn.jobs.handle import (ERROR_KINDS, FINISHED, STATUSES, JobCancelled, JobError, JobFailed,
                              JobHandle, Progress, Report)
from attn.jobs.runner import JobRunner, default_runner, set_default_runner

__all__ = ["ERROR_KINDS", "FINISHED", "STATUSES", "JobCancelled", "JobError", "JobFailed", "JobHandle",
           "JobRunner", "Progress", "Report", "default_runner", "set_default_runner"]
