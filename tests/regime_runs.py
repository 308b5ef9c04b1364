"""Hand-made saved runs of each regime for the page, report and economics tests: the keys of a
profile's results as attn.profiles.Profile writes them, with round numbers to check by hand; and
an old profile, saved before the regimes, with no mode at all."""
from __future__ import annotations

from attn.runs import RunStore
from attn.spec import AttentionSpec

CPU = {"device": "Test CPU (2 cores)", "device_kind": "cpu", "torch": "2.13.0"}
GPU = {"device": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "driver": "550.54"}
SPEC = AttentionSpec(batch=2, seq=32, heads=2, head_dim=16, causal=True, device="cpu")


def decode_spec(context: int, new_tokens: int = 1) -> AttentionSpec:
    return SPEC.with_(seq=new_tokens, kv_seq=context, causal_align="bottom_right")


def old_profile(variant: str = "sdpa", latency_ms: float = 0.2) -> dict:
    """A forward profile as attn saved it before the regimes: no mode, no regime numbers."""
    return {"variant": variant, "spec": SPEC.to_dict(), "latency_ms": latency_ms, "p10_ms": latency_ms * 0.9,
            "p90_ms": latency_ms * 1.1, "flops": 4 * 2 * 2 * 16 * 528, "peak_bytes": 32_000,
            "achieved_tflops": 0.01, "kernel_error": 1e-7, "approx_error": 1e-7, "energy_j": None}


def train_profile(variant: str = "sdpa", forward_ms: float = 1.0, backward_ms: float = 2.0,
                  energy_j: float | None = None) -> dict:
    return {**old_profile(variant, forward_ms + backward_ms), "mode": "train", "forward_ms": forward_ms,
            "backward_ms": backward_ms, "forward_p10_ms": forward_ms * 0.9, "forward_p90_ms": forward_ms * 1.1,
            "saved_bytes": 8704, "grad_error": 2.5e-7, "flops_executed": 931840, "energy_j": energy_j}


def decode_profile(variant: str = "sdpa", context: int = 256, step_ms: float = 0.05, floor_ms: float = 0.01,
                   new_tokens: int = 1, energy_j: float | None = None) -> dict:
    spec = decode_spec(context, new_tokens)
    bytes_read = 2 * spec.batch * spec.kv_heads * context * spec.head_dim * 4
    return {**old_profile(variant, step_ms), "spec": spec.to_dict(), "mode": "decode", "context": context,
            "new_tokens": new_tokens, "per_token_ms": step_ms / new_tokens, "bytes_read": bytes_read,
            "achieved_gbps": bytes_read / (step_ms * 1e-3) / 1e9, "floor_ms": floor_ms, "energy_j": energy_j}


def save_regime_runs(store: RunStore | None = None) -> dict[str, int]:
    """One run of each kind of interest, on the test CPU; their ids by name."""
    store = store or RunStore()
    ids = {"old": store.save("profile", SPEC, old_profile(), variant="sdpa", environment=CPU)}
    train = train_profile()
    ids["train"] = store.save("profile", SPEC, train, variant="sdpa", environment=CPU)
    for name, context, step in (("decode", 256, 0.05), ("decode_long", 1024, 0.2)):
        d = decode_profile(context=context, step_ms=step, floor_ms=step / 5)
        ids[name] = store.save("profile", d["spec"], d, variant="sdpa", environment=CPU)
    return ids
