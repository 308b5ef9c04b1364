"""What the machine is doing while attention runs: a background sampler of GPU and CPU counters.

A daemon thread reads NVML (attn.nvml: GPU utilisation, memory, power, temperature, SM clock, the energy
counter) and psutil (CPU, process and system memory) about ten times a second into a bounded ring
buffer. Jobs `mark` their start and end, so the dashboard can draw them on the curves and
`energy_j` can turn the samples between two marks into joules.

Without an NVIDIA driver (laptops, CI) the GPU fields are None, `Sampler.gpu_status` says so in
one sentence, and the CPU side is sampled as usual. The GPU reader is injectable, so the GPU path
is tested on the CPU with a fake one.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import psutil

from attn.device import cpu_name
from attn.nvml import GpuReader, GpuReading, open_nvml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    t: float  # time.time()
    gpu_util_pct: float | None = None
    gpu_mem_used_bytes: int | None = None
    gpu_mem_total_bytes: int | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    energy_mj: int | None = None
    cpu_pct: float | None = None  # system-wide, 0..100
    process_cpu_pct: float | None = None  # this process, % of one core (above 100 when multi-threaded)
    process_rss_bytes: int | None = None
    sys_mem_used_bytes: int | None = None  # total - available: what can't be handed out without swapping
    sys_mem_total_bytes: int | None = None


SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Sample))
METRIC_FIELDS: tuple[str, ...] = SAMPLE_FIELDS[1:]


class Sampler:
    """Samples GPU and CPU counters every `interval_s` on a daemon thread into a ring buffer.

    `capacity` samples are kept (6000 at 10 Hz is ten minutes); older ones are dropped. All
    public methods are safe to call from any thread.
    """

    def __init__(self, interval_s: float = 0.1, capacity: int = 6000, gpu_index: int = 0,
                 gpu_reader: GpuReader | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.interval_s = float(interval_s)
        self.capacity = int(capacity)
        self.gpu_index = gpu_index
        self._owns_reader = gpu_reader is None
        if gpu_reader is None:
            gpu_reader, status = open_nvml(gpu_index)
        else:
            status = f"GPU {gpu_index}: {gpu_reader.name}"
        self._gpu: GpuReader | None = gpu_reader
        self._ok_status = status
        self.gpu_status: str = status
        self.gpu_available: bool = gpu_reader is not None
        # Once per sampler, and at info level: a CPU-only machine is a normal place to run, and
        # the same words reach the user through gpu_status.
        log.info(status)
        self._samples: deque[Sample] = deque(maxlen=self.capacity)
        self._marks: deque[tuple[float, str]] = deque(maxlen=self.capacity)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process(os.getpid())  # once: building one per tick would cost more than reading it
        self._busy_s = 0.0
        self._ticks = 0
        self._tick_error_logged = False

    @property
    def device_name(self) -> str:
        return self._gpu.name if self._gpu is not None else cpu_name()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def busy_s(self) -> float:
        """CPU seconds the sampling thread has spent on its own ticks."""
        return self._busy_s

    @property
    def ticks(self) -> int:
        return self._ticks

    def start(self) -> "Sampler":
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="attn-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(1.0, 5 * self.interval_s))

    def close(self) -> None:
        """Stop, and release NVML if this sampler opened it."""
        self.stop()
        if self._owns_reader and self._gpu is not None and hasattr(self._gpu, "close"):
            self._gpu.close()

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        # psutil's percentages are relative to the previous call (system-wide: the previous call
        # from the same thread), so the baseline is set here and the first sample, one interval
        # later, measures that interval.
        psutil.cpu_percent(interval=None)
        self._process.cpu_percent(interval=None)
        # Ticks are scheduled on a fixed grid rather than "interval after the last one", so the
        # rate does not drift by the cost of a tick; a late tick skips ahead instead of bursting.
        next_t = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            busy0 = time.thread_time()
            try:
                sample = self.read_sample()
            except Exception as e:  # a failing counter must not stop the curves for good
                if not self._tick_error_logged:
                    log.warning("telemetry sample failed (%s); retrying every tick", e)
                    self._tick_error_logged = True
                sample = None
            if sample is not None:
                with self._cond:
                    self._samples.append(sample)
                    self._cond.notify_all()
            self._ticks += 1
            self._busy_s += time.thread_time() - busy0
            next_t += self.interval_s
            now = time.monotonic()
            if next_t < now:
                next_t = now + self.interval_s

    def read_sample(self) -> Sample:
        """Read every counter once, now. The thread calls this; tests may too."""
        gpu = GpuReading()
        if self._gpu is not None:
            try:
                gpu = self._gpu.read()
            except Exception as e:
                if self.gpu_available:
                    self.gpu_status = f"GPU read failed ({e}): GPU metrics are off until it recovers"
                    self.gpu_available = False
                    log.warning(self.gpu_status)
            else:
                if not self.gpu_available:
                    self.gpu_status = self._ok_status
                    self.gpu_available = True
        with self._process.oneshot():
            proc_cpu = self._process.cpu_percent(interval=None)
            rss = self._process.memory_info().rss
        vm = psutil.virtual_memory()
        return Sample(
            t=time.time(),
            **asdict(gpu),
            cpu_pct=psutil.cpu_percent(interval=None),
            process_cpu_pct=proc_cpu,
            process_rss_bytes=rss,
            sys_mem_used_bytes=vm.total - vm.available,
            sys_mem_total_bytes=vm.total,
        )

    def add(self, sample: Sample) -> None:
        """Append a sample by hand (replaying a recording, tests)."""
        with self._cond:
            self._samples.append(sample)
            self._cond.notify_all()

    def samples(self, since: float | None = None) -> list[Sample]:
        """Samples taken strictly after `since` (a time.time()), oldest first; all when None.

        Passing the last seen sample's `t` returns only the new ones, which is how a polling
        dashboard keeps up without duplicates.
        """
        with self._cond:
            if since is None:
                return list(self._samples)
            newer = []
            for s in reversed(self._samples):  # the newest are at the right; stop at the first old one
                if s.t <= since:
                    break
                newer.append(s)
        newer.reverse()
        return newer

    def latest(self) -> Sample | None:
        with self._cond:
            return self._samples[-1] if self._samples else None

    def sample_after(self, t: float, timeout_s: float = 1.0) -> Sample | None:
        """Wait until a sample later than `t` exists and return it (None on timeout).

        A job that just ended usually has no sample after its end yet; `energy_j` needs one to
        interpolate the end of the window, so wait for it before asking.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not (self._samples and self._samples[-1].t > t):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._samples[-1]

    def mark(self, label: str, t: float | None = None) -> float:
        """Record an event (a job's start or end) at `t` (default now); returns its time."""
        t = time.time() if t is None else float(t)
        with self._cond:
            self._marks.append((t, str(label)))
        return t

    def marks(self, since: float | None = None) -> list[tuple[float, str]]:
        """(t, label) events strictly after `since`, oldest first; all when None."""
        with self._cond:
            return [m for m in self._marks if since is None or m[0] > since]


_shared: Sampler | None = None
_shared_lock = threading.Lock()


def shared_sampler() -> Sampler:
    """The process's one running sampler, started on first use (the app and its jobs share it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sampler()
            atexit.register(_shared.close)
        if not _shared.running:
            _shared.start()
        return _shared


# ---- energy: pure functions of recorded samples ----

@dataclass(frozen=True)
class EnergyEstimate:
    joules: float | None
    method: str  # "nvml_counter", "power_integral" or "unavailable"
    t0: float
    t1: float
    reason: str = ""  # why joules is None, or what the number rests on

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    @property
    def mean_power_w(self) -> float | None:
        if self.joules is None or self.seconds <= 0:
            return None
        return self.joules / self.seconds

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": self.seconds, "mean_power_w": self.mean_power_w}


def _series(samples: Sequence[Sample], name: str) -> list[tuple[float, float]]:
    return [(s.t, float(v)) for s in samples if (v := getattr(s, name)) is not None]


def _interp(series: list[tuple[float, float]], t: float) -> float:
    """Linear interpolation in a time-sorted series that covers t."""
    for (ta, va), (tb, vb) in zip(series, series[1:]):
        if ta <= t <= tb:
            return va if tb == ta else va + (vb - va) * (t - ta) / (tb - ta)
    if series and series[0][0] == t:
        return series[0][1]
    raise ValueError(f"t={t} is outside the series")


def _covers(series: list[tuple[float, float]], t0: float, t1: float) -> bool:
    return bool(series) and series[0][0] <= t0 and series[-1][0] >= t1


def energy_j(samples: Sequence[Sample], t0: float, t1: float) -> EnergyEstimate:
    """GPU energy between t0 and t1 (time.time() seconds) from recorded samples.

    Prefers NVML's energy counter (its difference, interpolated at t0 and t1); else integrates
    power_w by the trapezoid rule, interpolating power at t0 and t1; else joules is None and
    `reason` says why. Both need a sample at or before t0 and one at or after t1: see
    `Sampler.sample_after`.
    """
    if t1 < t0:
        raise ValueError(f"t1 ({t1}) is before t0 ({t0})")
    ordered = sorted(samples, key=lambda s: s.t)

    counter = _series(ordered, "energy_mj")
    if _covers(counter, t0, t1):
        mj = _interp(counter, t1) - _interp(counter, t0)
        if mj >= 0:  # a counter that went backwards was reset (driver reload); power still tells
            return EnergyEstimate(mj / 1000.0, "nvml_counter", t0, t1,
                                  "difference of NVML's total-energy counter")

    power = _series(ordered, "power_w")
    if _covers(power, t0, t1):
        inside = [(t, p) for t, p in power if t0 < t < t1]
        points = [(t0, _interp(power, t0)), *inside, (t1, _interp(power, t1))]
        joules = sum((tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in zip(points, points[1:]))
        return EnergyEstimate(joules, "power_integral", t0, t1,
                              f"trapezoid of power_w over {len(points)} points")

    if not counter and not power:
        reason = "no power or energy readings (no GPU metrics in these samples)"
    else:
        have = counter or power
        reason = (f"samples cover {have[0][0]:.3f}..{have[-1][0]:.3f}, not the window "
                  f"{t0:.3f}..{t1:.3f}; wait for a sample after the end")
    return EnergyEstimate(None, "unavailable", t0, t1, reason)


def energy_per_token_j(energy: EnergyEstimate | float | None, tokens: int) -> float | None:
    """Joules per token; None when the energy is unknown or there were no tokens."""
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    joules = energy.joules if isinstance(energy, EnergyEstimate) else energy
    if joules is None or tokens == 0:
        return None
    return joules / tokens


# ---- tables and summaries, for the CLI and the dashboard ----

def samples_to_columns(samples: Sequence[Sample]) -> dict[str, list]:
    """{field: [values]} in sample order; ready for json.dumps or pandas.DataFrame."""
    return {name: [getattr(s, name) for s in samples] for name in SAMPLE_FIELDS}


def summarise(samples: Sequence[Sample]) -> dict[str, dict[str, float | None]]:
    """{metric: {"mean", "max"}} over the samples; None where a metric was never read."""
    out: dict[str, dict[str, float | None]] = {}
    for name in METRIC_FIELDS:
        values = [v for s in samples if (v := getattr(s, name)) is not None]
        out[name] = {"mean": sum(values) / len(values) if values else None,
                     "max": max(values) if values else None}
    return out


def monitor(seconds: float, interval_s: float = 0.1, gpu_index: int = 0,
            gpu_reader: GpuReader | None = None) -> dict:
    """Sample for `seconds` and return what `python -m attn monitor --json` prints."""
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    sampler = Sampler(interval_s=interval_s, capacity=int(seconds / interval_s) + 16,
                      gpu_index=gpu_index, gpu_reader=gpu_reader)
    with sampler:
        time.sleep(seconds)
    samples = sampler.samples()
    energy = (energy_j(samples, samples[0].t, samples[-1].t) if samples
              else EnergyEstimate(None, "unavailable", 0.0, 0.0, "no samples"))
    return {
        "device": sampler.device_name,
        "gpu_available": sampler.gpu_available,
        "gpu_status": sampler.gpu_status,
        "seconds": seconds,
        "interval_s": interval_s,
        "count": len(samples),
        "samples": samples_to_columns(samples),
        "summary": summarise(samples),
        "energy": energy.to_dict(),
        "sampler_busy_s": sampler.busy_s,
    }
