"""The numbers each regime adds to a saved profile, with their names and units, so the Compare
page and the HTML report name them in the same words.

A profile's results always hold latency, FLOPs and peak memory; what `latency_ms` is depends on
the mode (forward: one call; train: the forward and the backward medians added; decode: one
step), and train and decode add their own numbers (attn.profiles.Profile). Results saved before
the regimes have no mode and are forward (attn.runs.mode_of).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from attn.readable import ms, nbytes, pct, ratio, si

MODE_WORDS = {
    "forward": "forward: one call over the whole sequence (a prefill)",
    "train": "train: forward + backward with respect to q, k and v",
    "decode": "decode: one step, the new tokens against a KV cache",
}
# what `latency_ms` is in each mode
LATENCY_WORDS = {
    "forward": "median of one call over the sequence",
    "train": "forward and backward medians added (one training step)",
    "decode": "median of one decode step",
}


@dataclass(frozen=True)
class Number:
    key: str
    label: str
    text: Callable[[Any], str]
    comparable: bool = False  # a ratio between two runs of the same mode means something
    derive: Callable[[dict[str, Any]], Any] | None = None  # computed from the results, not saved

    def value(self, results: dict[str, Any]) -> Any:
        return self.derive(results) if self.derive is not None else results.get(self.key)


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _gbps(value: Any) -> str:
    return "—" if value is None else f"{value:.3g} GB/s"


def _floor_share(results: dict[str, Any]) -> float | None:
    floor, step = results.get("floor_ms"), results.get("latency_ms")
    return 100.0 * floor / step if floor is not None and step else None


NUMBERS: dict[str, tuple[Number, ...]] = {
    "forward": (),
    "train": (
        Number("forward_ms", "forward (median)", ms, comparable=True),
        Number("backward_ms", "backward (median)", ms, comparable=True),
        Number("saved_bytes", "saved for the backward", nbytes, comparable=True),
        Number("grad_error", "grad error (largest of dq, dk, dv)", ratio),
        Number("flops_executed", "FLOPs executed (backward recomputes the scores)",
               lambda v: si(v, "FLOP")),
    ),
    "decode": (
        Number("context", "context (cached keys)", _count),
        Number("new_tokens", "new tokens per step", _count),
        Number("per_token_ms", "per token (step ÷ new tokens)", ms, comparable=True),
        Number("bytes_read", "bytes read per step", nbytes, comparable=True),
        Number("achieved_gbps", "achieved bandwidth (bytes read ÷ step)", _gbps),
        Number("floor_ms", "bandwidth floor (bytes read ÷ copy bandwidth)", ms),
        Number("floor_share", "floor ÷ step (100% = at the floor)", pct, derive=_floor_share),
    ),
}


def numbers_of(mode: str) -> tuple[Number, ...]:
    """The numbers a regime adds; none for a mode this attn does not know."""
    return NUMBERS.get(mode, ())


def regime_rows(results: dict[str, Any], mode: str) -> list[tuple[str, str]]:
    """(label, text) of each number the regime adds, for one run's results."""
    return [(n.label, n.text(n.value(results))) for n in numbers_of(mode)]
