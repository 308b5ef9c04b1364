"""The train and decode regimes: every variant's backward against float64 autograd of its own
weights, decode steps against the rows of the whole forward, the caches a decode step reads, the
FLOP conventions on closed forms, and bad input that gets one line."""
from __future__ import annotations

import pytest

from attn import measure, variants
from attn.cli import EXIT_BAD_INPUT, main
from attn.cost import attention_cost
from attn.inputs import random_qkv
from attn.memory import DoesNotFit
from attn.regimes import decode_spec
from attn.spec import AttentionSpec
from attn.training import grad_error, saved_bytes, upstream_gradient
from tests.test_variants import BASE, SHAPES, relative_error

DECODERS = [n for n in variants.names() if "decode" not in variants.get(n).cannot]


def _inputs(spec: AttentionSpec):
    return tuple(t.requires_grad_() for t in random_qkv(spec))


# -- train ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [s for name, s in SHAPES if name in (
    "square-causal", "more-keys-causal-br", "more-queries-causal-tl", "gqa", "mqa-causal", "mqa-tl",
    "more-keys", "one-query")], ids=str)
@pytest.mark.parametrize("name", variants.names())
def test_backward_matches_float64_autograd_of_the_variants_own_weights(name, shape):
    spec = AttentionSpec(**{**BASE, **shape})
    var = variants.get(name)
    if var.unsupported(spec, "cpu"):
        pytest.skip("; ".join(var.unsupported(spec, "cpu")))
    q, k, v = _inputs(spec)
    out = var.run(q, k, v, spec)
    g = upstream_gradient(out, spec.seed)
    worst, rows = grad_error(lambda: var.run(q, k, v, spec), (q, k, v), g, spec, name)
    assert rows == spec.seq
    assert worst < 1e-4, f"{name}: largest relative gradient error {worst:.2e}"


def test_grad_error_on_sampled_rows_compares_like_with_like():
    # past ERROR_ROWS rows the upstream gradient is kept on a sample for kernel and reference alike
    spec = AttentionSpec(seq=300, heads=2, head_dim=8, causal=True)
    q, k, v = _inputs(spec)
    var = variants.get("sdpa")
    g = upstream_gradient(var.run(q, k, v, spec), 0)
    worst, rows = grad_error(lambda: var.run(q, k, v, spec), (q, k, v), g, spec, "sdpa", max_rows=16)
    assert rows == 16 and worst < 1e-4


def test_a_wrong_backward_is_caught():
    spec = AttentionSpec(seq=17, heads=2, head_dim=8, causal=True)
    q, k, v = _inputs(spec)
    var = variants.get("dense")
    g = upstream_gradient(var.run(q, k, v, spec), 0)
    worst, _ = grad_error(lambda: var.run(q, k, v * 1.01, spec), (q, k, v), g, spec, "dense")
    assert worst > 5e-3


@pytest.mark.parametrize("name, backend", [("dense", "auto"), ("sdpa", "flash"), ("sdpa", "math")])
@pytest.mark.parametrize("shape", [dict(seq=256, causal=True), dict(seq=96, kv_seq=160, kv_heads=2)], ids=str)
def test_saved_bytes_of_dense_and_sdpa_are_the_cost_models(name, backend, shape):
    spec = AttentionSpec(heads=4, head_dim=16, backend=backend, **shape)
    var = variants.get(name)
    q, k, v = _inputs(spec)
    var.run(q, k, v, spec)  # sdpa auto times its backends on the first call
    _, kept = saved_bytes(lambda: var.run(q, k, v, spec), (q, k, v))
    assert kept == attention_cost(spec, name, "train").saved_bytes


def test_a_train_profile_carries_the_regimes_numbers():
    spec = AttentionSpec(seq=64, heads=2, head_dim=16, causal=True)
    prof = measure.profile(spec, "sdpa", device="cpu", budget_s=0.05, mode="train")
    assert prof.mode == "train" and prof.forward_ms > 0 and prof.backward_ms > 0
    assert prof.latency_ms == pytest.approx(prof.forward_ms + prof.backward_ms)
    assert prof.saved_bytes == prof.cost["saved_bytes"] and prof.grad_error < 1e-4
    assert prof.flops == 3 * attention_cost(spec, "sdpa").flops
    assert "backward = 2x" in prof.flops_convention


# -- decode --------------------------------------------------------------------------------------
@pytest.mark.parametrize("new_tokens", [1, 3])
@pytest.mark.parametrize("name", DECODERS)
def test_a_decode_step_gives_the_last_rows_of_the_whole_forward(name, new_tokens):
    full = AttentionSpec(**{**BASE, "seq": 203, "heads": 4, "kv_heads": 2, "causal": True,
                            "dtype": "float64", "window": 9, "block": 16})
    var = variants.get(name)
    q, k, v = random_qkv(full)
    expected = var.run(q, k, v, full)[:, :, -new_tokens:]
    step = var.decode_step(q[:, :, -new_tokens:].contiguous(), k, v, decode_spec(full, 203, new_tokens))
    assert relative_error(step(), expected) < 1e-12


def test_linformer_cannot_decode_and_says_why():
    spec = decode_spec(AttentionSpec(heads=2, head_dim=8), 64)
    with pytest.raises(ValueError, match="linformer: pools keys across positions"):
        attention_cost(spec, "linformer", "decode")
    with pytest.raises(ValueError, match="no cache to decode against"):
        measure.profile(spec, "linformer", device="cpu", budget_s=0.01, mode="decode")


def test_the_sliding_window_cache_stops_growing_at_the_window():
    base = AttentionSpec(heads=8, head_dim=64, window=256)
    read = {c: attention_cost(decode_spec(base, c), "sliding_window", "decode") for c in (128, 1024, 32768)}
    assert read[128].cached_keys == 128 and read[1024].cached_keys == read[32768].cached_keys == 256
    assert read[1024].bytes_read == read[32768].bytes_read
    assert attention_cost(decode_spec(base, 1024, 4), "sliding_window", "decode").cached_keys == 259


def test_recurrent_state_bytes_are_flat_in_the_context():
    base = AttentionSpec(heads=8, head_dim=64)
    for name in ("linear", "performer"):
        costs = [attention_cost(decode_spec(base, c), name, "decode") for c in (1024, 32768)]
        assert costs[0].bytes_read == costs[1].bytes_read and costs[0].cached_keys == 0
        assert costs[0].flops == costs[1].flops


def test_bytes_read_are_the_cache_tensors_the_step_reads(monkeypatch):
    spec = decode_spec(AttentionSpec(heads=4, kv_heads=2, head_dim=16, window=40), 300, 2)
    q, k, v = random_qkv(spec)
    # sdpa reads the whole cache it is handed
    assert attention_cost(spec, "sdpa", "decode").bytes_read == q.nbytes + k.nbytes + v.nbytes
    # sliding_window keeps a rolling cache and hands the kernel only that
    seen = []
    real = variants.sliding_window.run
    monkeypatch.setattr(variants.sliding_window, "run",
                        lambda q, k, v, s: seen.append(q.nbytes + k.nbytes + v.nbytes) or real(q, k, v, s))
    variants.get("sliding_window").decode_step(q, k, v, spec)()
    assert seen == [attention_cost(spec, "sliding_window", "decode").bytes_read]


def test_the_recurrent_state_read_is_the_state_the_cost_model_counts():
    spec = decode_spec(AttentionSpec(heads=4, kv_heads=2, head_dim=16), 300)
    q, k, v = random_qkv(spec)
    step = variants.get("linear").decode_step(q, k, v, spec)
    cells = dict(zip(step.__code__.co_freevars, (c.cell_contents for c in step.__closure__), strict=True))
    state = cells["state"].nbytes + cells["z"].nbytes
    assert state == variants.get("linear").decode_state_bytes(spec)


def test_a_decode_profile_carries_bytes_floor_and_per_token_time():
    spec = decode_spec(AttentionSpec(heads=2, head_dim=16), 512, 4)
    prof = measure.profile(spec, "sdpa", device="cpu", budget_s=0.05, mode="decode")
    assert (prof.mode, prof.context, prof.new_tokens) == ("decode", 512, 4)
    assert prof.bytes_read == prof.cost["bytes_read"] and prof.floor_ms > 0
    assert prof.per_token_ms == pytest.approx(prof.latency_ms / 4)
    assert prof.achieved_gbps == pytest.approx(prof.bytes_read / (prof.latency_ms * 1e-3) / 1e9)
    assert prof.kernel_error < 1e-5


# -- FLOP conventions ----------------------------------------------------------------------------
def test_train_flops_are_three_forwards_and_recomputing_kernels_execute_three_and_a_half():
    spec = AttentionSpec(seq=1024, heads=8, head_dim=64, causal=True)
    forward = 4 * 8 * 64 * (1024 * 1025 // 2)
    sdpa, dense = attention_cost(spec, "sdpa", "train"), attention_cost(spec, "dense", "train")
    assert sdpa.flops == dense.flops == 3 * forward
    assert sdpa.flops_executed == 7 * forward // 2 and dense.flops_executed is None
    assert attention_cost(spec.with_(backend="math"), "sdpa", "train").flops_executed is None


def test_decode_flops_on_closed_forms():
    base = AttentionSpec(heads=8, kv_heads=2, head_dim=64)
    spec = decode_spec(base, 4096)
    assert attention_cost(spec, "sdpa", "decode").flops == 4 * 8 * 64 * 4096
    assert attention_cost(spec, "linear", "decode").flops == 2 * 2 * 64 * 64 + 2 * 8 * 64 * 65
    assert attention_cost(decode_spec(base, 4096, 3), "sdpa", "decode").flops == 4 * 8 * 64 * (4094 + 4095 + 4096)
    # bytes: a key and a value per cached key and KV head, and the new queries
    assert attention_cost(spec, "sdpa", "decode").bytes_read == (2 * 2 * 4096 * 64 + 8 * 64) * 4


# -- bad input -----------------------------------------------------------------------------------
def test_a_decode_cache_that_does_not_fit_is_refused_before_allocating():
    spec = decode_spec(AttentionSpec(batch=64, heads=64, head_dim=128), 2**24)
    with pytest.raises(DoesNotFit, match=r"does not fit: sdpa \(decode\) at context 16777216"):
        measure.profile(spec, "sdpa", device="cpu", budget_s=0.01, mode="decode")


def test_a_mode_a_variant_cannot_run_gets_its_reason(monkeypatch):
    var = variants.get("topk")
    monkeypatch.setitem(var.cannot, "train", "topk: a test says it cannot train")
    with pytest.raises(ValueError, match="a test says it cannot train"):
        measure.profile(AttentionSpec(seq=16, heads=2, head_dim=8), "topk", device="cpu",
                        budget_s=0.01, mode="train")
    with pytest.raises(ValueError, match="unknown mode 'serve': choose forward, train or decode"):
        measure.profile(AttentionSpec(seq=16), "sdpa", device="cpu", mode="serve")


@pytest.mark.parametrize("argv, message", [
    (["profile", "--variant", "sdpa", "--mode", "decode", "--context", "4", "--new-tokens", "8"],
     "new_tokens (8) must be at most context (4)"),
    (["cost", "--variant", "sdpa", "--mode", "serve"], "unknown mode 'serve': choose forward, train or decode"),
    (["cost", "--variant", "linformer", "--mode", "decode", "--context", "64"], "no cache to decode against"),
    (["cost", "--variant", "sdpa", "--context", "64"], "--context and --new-tokens are for --mode decode"),
    (["sweep", "--variants", "sdpa", "--mode", "decode"], "a decode sweep needs --context"),
    (["profile", "--variant", "sdpa", "--mode", "decode", "--context", "16777216", "--batch", "64",
      "--heads", "64", "--head-dim", "128", "--device", "cpu"], "does not fit: sdpa (decode)"),
])
def test_bad_regime_input_gets_one_line_and_exit_2(capsys, argv, message):
    assert main([*argv, "--json"]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err, err


def test_the_cli_measures_every_regime(capsys):
    import json

    tiny = ["--seq", "32", "--heads", "2", "--head-dim", "16", "--budget", "0.02", "--json"]
    assert main(["profile", "--variant", "dense", "--causal", "--mode", "train", *tiny]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "train"
    assert main(["sweep", "--variants", "sdpa,linear", "--mode", "decode", "--context", "64,128",
                 "--heads", "2", "--head-dim", "16", "--budget", "0.02", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "decode" and data["axis"] == "context" and data["xs"] == [64, 128]
    assert {p["status"] for p in data["points"]} == {"ok"}
    assert all(p["floor_ms"] > 0 for p in data["points"])


def test_gpu_energy_per_call_reads_the_counter_on_cuda_only(monkeypatch):
    from types import SimpleNamespace

    from attn import nvml

    assert nvml.gpu_energy_per_call(lambda: None, "cpu") is None  # no counter on the CPU
    counter = iter(range(0, 10**9, 1000))  # 1 J more at every read

    class Reader:
        def read(self):
            return SimpleNamespace(energy_mj=next(counter))

    monkeypatch.setattr(nvml, "open_nvml", lambda index: (Reader(), "ok"))
    monkeypatch.setattr(nvml, "synchronize", lambda device: None)  # attn's one wait for a GPU
    joules = nvml.gpu_energy_per_call(lambda: None, "cuda:0")
    assert joules is not None and joules > 0
