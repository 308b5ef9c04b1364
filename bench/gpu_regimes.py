"""bench.gpu's train and decode sections: the regimes of attn.regimes measured through
attn.measure.profile, each row beside the cost model's prediction or the bandwidth floor.

- train: forward + backward, causal, at cfg.train_seqs: the two medians, what the forward kept
  for the backward (autograd's saved tensors) against the cost model's saved_bytes, the step's
  peak against its step_bytes, the gradients' error against float64 autograd, and TFLOP/s on
  useful FLOPs (backward = 2x forward) and on executed FLOPs (a kernel that recomputes the
  scores in its backward: 2.5x forward).
- decode: one new token against a cache of cfg.decode_contexts keys, at cfg.decode_batches:
  per-token latency, the bytes the step reads, GB/s achieved on them, and the floor (those bytes
  over the calibrated copy bandwidth) with the latency's multiple of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from attn import calibrate
from attn.measure import DoesNotFit, profile
from attn.profiles import Profile
from attn.regimes import decode_spec
from attn.spec import AttentionSpec

from bench.gpu_config import Config
from bench.tables import f, first_line, markdown, mib, ratio


@dataclass(frozen=True)
class RegimeCase:
    label: str
    variant: str
    # the spec's changes for this case, from the config (a window's width, the KV heads)
    changes: Callable[[Config], dict] = field(default=lambda cfg: {})


def _backend(name: str) -> Callable[[Config], dict]:
    return lambda cfg: {"backend": name}


TRAIN_CASES = (
    RegimeCase("dense", "dense"),
    RegimeCase("sdpa", "sdpa"),  # auto: the backend it chose is in the row
    RegimeCase("sdpa:flash", "sdpa", _backend("flash")),
    RegimeCase("sdpa:efficient", "sdpa", _backend("efficient")),
    RegimeCase("sdpa:cudnn", "sdpa", _backend("cudnn")),
    RegimeCase("sliding_window", "sliding_window", lambda cfg: {"window": cfg.train_window}),
)
DECODE_CASES = (
    RegimeCase("sdpa", "sdpa"),  # multi-head: a key and a value per query head
    RegimeCase("sdpa:gqa", "sdpa", lambda cfg: {"kv_heads": cfg.gqa_kv_heads}),
    RegimeCase("sdpa:mqa", "sdpa", lambda cfg: {"kv_heads": 1}),
    RegimeCase("sliding_window", "sliding_window", lambda cfg: {"window": cfg.decode_window}),
    RegimeCase("linear", "linear"),  # a recurrent state: the same read at any context
)
NO_ANCHORS = "none: the anchors hold forward timings only"


def _error_ok(prof: Profile, tolerance: float) -> bool:
    return prof.kernel_error is not None and prof.kernel_error <= tolerance


def train_row(prof: Profile, tolerance: float) -> dict:
    """One train profile as a row: measured beside predicted (prof.cost is
    attention_cost(spec, variant, "train"), as profile() computed it)."""
    cost = prof.cost
    step_s = prof.latency_ms * 1e-3  # the forward's median plus the backward's
    executed = prof.flops_executed
    return dict(
        status="ok", backend=prof.backend, forward_ms=prof.forward_ms,
        forward_p10_ms=prof.forward_p10_ms, forward_p90_ms=prof.forward_p90_ms,
        backward_ms=prof.backward_ms, backward_p10_ms=prof.backward_p10_ms,
        backward_p90_ms=prof.backward_p90_ms, step_ms=prof.latency_ms, repeats=prof.repeats,
        saved_bytes=prof.saved_bytes, saved_predicted=cost["saved_bytes"],
        saved_vs_predicted=ratio(prof.saved_bytes, cost["saved_bytes"]),
        peak_bytes=prof.peak_bytes, step_predicted=cost["step_bytes"],
        peak_vs_predicted=ratio(prof.peak_bytes, cost["step_bytes"]),
        grad_error=prof.grad_error, kernel_error=prof.kernel_error,
        error_ok=_error_ok(prof, tolerance), flops=prof.flops, flops_executed=executed,
        tflops=prof.achieved_tflops,
        tflops_executed=None if executed is None else executed / step_s / 1e12,
        roofline_pct=prof.roofline_pct, wall_s=prof.wall_s)


def decode_row(prof: Profile, tolerance: float) -> dict:
    """One decode profile as a row: the step against its bandwidth floor."""
    return dict(
        status="ok", backend=prof.backend, per_token_ms=prof.per_token_ms,
        latency_ms=prof.latency_ms, p10_ms=prof.p10_ms, p90_ms=prof.p90_ms, repeats=prof.repeats,
        bytes_read=prof.bytes_read, cached_keys=prof.cost["cached_keys"],
        achieved_gbps=prof.achieved_gbps, floor_ms=prof.floor_ms,
        vs_floor=ratio(prof.latency_ms, prof.floor_ms), peak_bytes=prof.peak_bytes,
        kernel_error=prof.kernel_error, error_ok=_error_ok(prof, tolerance),
        tflops=prof.achieved_tflops, wall_s=prof.wall_s)


def _refusal(err: Exception) -> tuple[dict, bool]:
    """(the row's status and message, whether a longer size can be skipped)."""
    if isinstance(err, DoesNotFit):
        return {"status": "oom", "message": first_line(err)}, True  # longer only needs more
    if isinstance(err, ValueError):
        return {"status": "unsupported", "message": first_line(err)}, True  # same at any size
    return {"status": "error", "message": first_line(err)}, False  # a compile or kernel failure


def _series(cfg: Config, case: RegimeCase, mode: str, heads: list[dict],
            spec_for: Callable[[Config, dict, dict], AttentionSpec],
            row_for: Callable[[Profile, float], dict], line: Callable[[dict], str]) -> list[dict]:
    """One case profiled along its sizes, shortest first (`heads` start each row): a row per
    size, until a refusal that the longer sizes would meet too."""
    rows = []
    for head in heads:
        row = {"case": case.label, "variant": case.variant, **head}
        rows.append(row)
        try:
            spec = spec_for(cfg, head, case.changes(cfg))
            prof = profile(spec, case.variant, device=cfg.device, budget_s=cfg.budget_s, mode=mode)
        except Exception as err:  # noqa: BLE001 -- one row, not the run
            refusal, stop = _refusal(err)
            row.update(refusal)
            if stop:
                break
            continue
        row.update(row_for(prof, cfg.error_tolerance))
        print(f"  {mode} {case.label:16} {line(row)}", flush=True)
    return rows


def _train_spec(cfg: Config, head: dict, changes: dict) -> AttentionSpec:
    return cfg.spec(head["seq"], True, **changes)


def _train_line(r: dict) -> str:
    return (f"seq {r['seq']:>6}: forward {r['forward_ms']:9.3f} ms, backward {r['backward_ms']:9.3f} ms, "
            f"saved x{r['saved_vs_predicted'] or float('nan'):.2f} of predicted, grad_error "
            f"{r['grad_error']:.1e}")


def train(cfg: Config, cases: tuple[RegimeCase, ...]) -> list[dict]:
    heads = [{"seq": seq, "causal": True} for seq in cfg.train_seqs]
    return [row for case in cases
            for row in _series(cfg, case, "train", heads, _train_spec, train_row, _train_line)]


def _decode_spec(cfg: Config, head: dict, changes: dict) -> AttentionSpec:
    return decode_spec(cfg.spec(head["context"], True, batch=head["batch"], **changes),
                       head["context"])


def _decode_line(r: dict) -> str:
    return (f"batch {r['batch']} context {r['context']:>7}: {r['per_token_ms']:8.4f} ms/token, "
            f"{r['achieved_gbps']:8.1f} GB/s, x{r['vs_floor'] or float('nan'):.2f} of the floor")


def decode(cfg: Config, cases: tuple[RegimeCase, ...]) -> list[dict]:
    rows = []
    for case in cases:
        kv_heads = case.changes(cfg).get("kv_heads", cfg.heads)
        for batch in cfg.decode_batches:
            heads = [{"batch": batch, "context": context, "new_tokens": 1, "kv_heads": kv_heads}
                     for context in cfg.decode_contexts]
            rows += _series(cfg, case, "decode", heads, _decode_spec, decode_row, _decode_line)
    return rows


def bandwidth_gbps(device: str) -> float | None:
    """The calibrated copy bandwidth the decode floors were computed from."""
    cal = calibrate.cached(device)
    return None if cal is None else cal.bandwidth_gbps


# -- the report ---------------------------------------------------------------------------------
def _refused(rows: list[dict], size: Callable[[dict], str]) -> list[str]:
    return [f"- {r['case']} {size(r)}: {r['status']}: {r['message']}"
            for r in rows if r.get("status") in ("oom", "unsupported", "error")]


def train_report(rows: list[dict], tolerance: float, anchors: str | None) -> list[str]:
    cols = [("case", "case", str), ("seq", "seq", str), ("status", "status", str),
            ("backend", "backend", str), ("forward_ms", "forward ms", f(".3f")),
            ("backward_ms", "backward ms", f(".3f")), ("tflops", "TFLOP/s useful", f(".1f")),
            ("tflops_executed", "TFLOP/s executed", f(".1f")),
            ("saved_bytes", "saved MiB", mib), ("saved_predicted", "predicted", mib),
            ("saved_vs_predicted", "saved / predicted", f(".2f")),
            ("peak_bytes", "step peak MiB", mib), ("step_predicted", "predicted", mib),
            ("peak_vs_predicted", "peak / predicted", f(".2f")),
            ("grad_error", "grad err", f(".1e")), ("kernel_error", "kernel err", f(".1e"))]
    out = ["", "### Train (forward + backward, causal)", markdown(rows, cols),
           "\nTFLOP/s useful: FLOPs = forward + backward with the backward 2x the forward's "
           "matmuls, over the sum of the two medians; executed: FlashAttention's count (backward "
           "2.5x forward) for kernels that recompute the scores, '-' for those that do not. saved: "
           "what autograd keeps beyond q, k, v; predicted: attention_cost(..., 'train'). "
           "grad err: the largest of dq, dk, dv against float64 autograd (no target set)."]
    bad = [r for r in rows if r.get("status") == "ok" and not r.get("error_ok")]
    out.append(f"forward kernel error within {tolerance:g}: " + (
        "every case" if not bad else "NOT " + ", ".join(
            f"{r['case']} seq {r['seq']} ({r['kernel_error']})" for r in bad)))
    out += _refused(rows, lambda r: f"seq {r['seq']}")
    if anchors is not None:
        out.append(f"anchors ({anchors}): {NO_ANCHORS}")
    return out


def decode_report(rows: list[dict], bandwidth: float | None, anchors: str | None) -> list[str]:
    cols = [("case", "case", str), ("kv_heads", "KV heads", str), ("batch", "batch", str),
            ("context", "context", str), ("status", "status", str), ("backend", "backend", str),
            ("per_token_ms", "ms / token", f(".4f")), ("p10_ms", "p10", f(".4f")),
            ("p90_ms", "p90", f(".4f")), ("bytes_read", "MiB read", mib),
            ("achieved_gbps", "GB/s", f(".0f")), ("floor_ms", "floor ms", f(".4f")),
            ("vs_floor", "ms / floor", f(".2f")), ("kernel_error", "kernel err", f(".1e"))]
    at = "not calibrated" if bandwidth is None else f"{bandwidth:.0f} GB/s"
    out = ["", "### Decode (one new token against the cache)", markdown(rows, cols),
           f"\nfloor: bytes read (the cache or recurrent state the step reads, and the new "
           f"queries) over the calibrated copy bandwidth ({at}, bytes read plus written); "
           f"ms / floor: the step's median over it. On a GPU the L2 cache is flushed before "
           f"each step (a server's cache does not stay in it)."]
    out += _refused(rows, lambda r: f"batch {r['batch']} context {r['context']}")
    if anchors is not None:
        out.append(f"anchors ({anchors}): {NO_ANCHORS}")
    return out
