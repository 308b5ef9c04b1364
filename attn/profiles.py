"""Profile: what one profile measured, in any regime, and its place under the device's roof."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from attn import calibrate
from attn.spec import AttentionSpec


@dataclass
class Profile:
    variant: str
    spec: dict
    device: str
    backend: str
    latency_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    timing_method: str
    flops: int
    flops_counted: int | None
    flops_note: str
    achieved_tflops: float
    peak_bytes: int
    reserved_bytes: int | None
    memory_method: str
    kernel_error: float | None
    approx_error: float | None
    error_rows: int
    roofline_pct: float | None = None
    attainable_tflops: float | None = None
    energy_j: float | None = None  # per call, from the GPU energy counter; None on the CPU
    energy_per_token_j: float | None = None  # energy_j over the batch * seq queries of a call
    # sdpa on auto: what each backend did when auto timed them for this shape (or why it could
    # not run), so the choice can be checked
    backend_reasons: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    wall_s: float = 0.0  # the whole profile call
    # of which the first call, the warm-up (the call that also measures memory and counts
    # FLOPs) and the repeats
    timing_s: float = 0.0
    # the regime (attn.regimes) and what it adds: train times the forward and the backward
    # apart, and says what the forward keeps for the backward and how far the gradients are
    # from float64 autograd; decode says what one step reads and how near the bandwidth floor
    mode: str = "forward"
    flops_convention: str = ""
    flops_executed: int | None = None
    forward_ms: float | None = None
    forward_p10_ms: float | None = None
    forward_p90_ms: float | None = None
    backward_ms: float | None = None
    backward_p10_ms: float | None = None
    backward_p90_ms: float | None = None
    saved_bytes: int | None = None
    grad_error: float | None = None
    context: int | None = None
    new_tokens: int | None = None
    bytes_read: int | None = None
    achieved_gbps: float | None = None
    floor_ms: float | None = None  # bytes_read / this device's calibrated copy bandwidth
    per_token_ms: float | None = None

    @property
    def overhead_s(self) -> float:
        """What the profile spent beyond running the call to time it: memory, FLOP counter,
        errors, environment."""
        return max(0.0, self.wall_s - self.timing_s)

    def to_dict(self) -> dict:
        return asdict(self)


def add_roofline(prof: Profile, spec: AttentionSpec, device: str) -> None:
    cal = calibrate.cached(device)
    if cal is None:
        return
    attainable = cal.attainable_tflops(spec.dtype, prof.cost["arithmetic_intensity"])
    if attainable and math.isfinite(attainable):
        prof.attainable_tflops = attainable
        prof.roofline_pct = 100.0 * prof.achieved_tflops / attainable


def roofline_intensity(result: dict) -> float | None:
    """Where a saved profile sits on the roofline's x axis (FLOP per byte). A decode step's useful
    FLOPs over the bytes it reads (the cache, or the recurrent state, and the queries), so it
    lands on the bandwidth slope; forward and train: the cost model's arithmetic intensity
    (useful FLOPs over the minimum bytes moved). A result saved before the regimes has no
    `mode` and is a forward one."""
    cost = result.get("cost") or {}
    if (result.get("mode") or "forward") == "decode" and result.get("bytes_read"):
        return (result.get("flops") or cost.get("flops") or 0) / result["bytes_read"]
    return cost.get("arithmetic_intensity")
