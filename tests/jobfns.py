"""Job functions for test_jobs.py. Module-level, so that the spawned worker can import them, and
allowed by name: the worker runs jobs of attn's modules and of the modules allowed explicitly."""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from attn.jobs import codec

codec.allow_module(__name__)

_calls = itertools.count()
PATIENCE_S = 30.0  # how long a job waits for the test before it gives up


def add(a: int, b: int, *, report) -> dict:
    return {"sum": a + b, "pid": os.getpid()}


def in_order(tag: str, *, report) -> dict:
    """Which call this is in the worker that ran it: jobs must reach it in submission order."""
    return {"tag": tag, "call": next(_calls), "pid": os.getpid()}


def stream(n: int, gate: str, *, report) -> dict:
    """Send n items, then wait for the file `gate` to appear, so the test can look mid-job."""
    for i in range(n):
        report.partial({"i": i, "square": i * i})
        report.progress((i + 1) / n, f"point {i + 1} of {n}")
    deadline = time.monotonic() + PATIENCE_S
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    return {"points": n}


def until_cancelled(*, report) -> str:
    """A cooperative job: one partial item per step until it is asked to stop."""
    report.progress(0.0, "waiting for a cancel")
    deadline = time.monotonic() + PATIENCE_S
    step = 0
    while not report.cancelled():
        if time.monotonic() > deadline:
            raise TimeoutError("never cancelled")
        report.partial({"step": step})
        step += 1
        time.sleep(0.02)
    return "stopped"


def ignores_cancel(seconds: float, *, report) -> str:
    report.progress(0.0, "sleeping, deaf to cancels")
    time.sleep(seconds)
    return "slept"


def fails(message: str, *, report) -> None:
    report.progress(0.5, "about to fail")
    raise ValueError(message)


def torch_oom(*, report) -> None:
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a "
                                 "total capacity of 79.19 GiB of which 1.2 GiB is free.")


def cpu_oom(*, report) -> None:
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                       "memory: you tried to allocate 1099511627776 bytes.")


def cuda_fault(*, report) -> None:
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def unsendable_partial(*, report) -> None:
    report.partial(lambda: None)


def writes_marker(path: str, *, report) -> None:
    Path(path).write_text("ran")


def refuse_as_too_big(*, report):
    from attn.measure import DoesNotFit

    raise DoesNotFit("does not fit: dense at seq 1000000 needs ~119216.92 GiB, 11 GiB free on cpu")


def fingerprint(obj, path: str = "") -> list[list[str]]:
    """Every leaf of `obj` as [path, type, value]: arrays and tensors by dtype, shape and a digest
    of their bytes. Worked out on both sides of the worker, it shows what changed on the way."""
    import hashlib

    import numpy as np

    kind = type(obj).__module__ + "." + type(obj).__qualname__
    plain = next((t for t in (bool, int, float, str) if isinstance(obj, t)), None)
    if plain is not None and not isinstance(obj, np.generic):
        kind = f"builtins.{plain.__name__}"  # a subclass (TorchVersion, an IntEnum) arrives as its base
    if isinstance(obj, dict):
        return [[path, kind, str(len(obj))]] + [row for k, v in obj.items() for row in fingerprint(v, f"{path}/{k!r}")]
    if isinstance(obj, (list, tuple)):
        return [[path, kind, str(len(obj))]] + [row for i, v in enumerate(obj) for row in fingerprint(v, f"{path}/{i}")]
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.asarray(obj, order="C")
        return [[path, kind, f"{a.dtype.str} {a.shape} {hashlib.sha1(a.tobytes()).hexdigest()}"]]
    if type(obj).__name__ == "Tensor":
        t = obj.detach().contiguous()
        return [[path, kind, f"{t.dtype} {tuple(t.shape)} {fingerprint_tensor(t)}"]]
    if hasattr(obj, "__dataclass_fields__"):
        return [[path, kind, ""]] + [row for name in obj.__dataclass_fields__ for row in fingerprint(getattr(obj, name), f"{path}.{name}")]
    return [[path, kind, repr(obj)]]


def fingerprint_tensor(t) -> str:
    import hashlib

    import torch

    return hashlib.sha1(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


class _TracedReport:
    """A job's report that also fingerprints each partial item before it is sent."""

    def __init__(self, report):
        self._report, self.partials = report, []

    def partial(self, item) -> None:
        self.partials.append(fingerprint(item))
        self._report.partial(item)

    def __getattr__(self, name):
        return getattr(self._report, name)


def traced(task: str, *args, report, **kwargs) -> dict:
    """Run attn.tasks' `task` and return its result beside the fingerprints, taken in the worker,
    of the result and of each partial item."""
    from attn import tasks

    traced_report = _TracedReport(report)
    result = getattr(tasks, task)(*args, report=traced_report, **kwargs)
    return {"result": result, "fingerprint": fingerprint(result), "partials": traced_report.partials}
