"""Every variant against a float64 reference of its own math, and the approximations' errors.

The reference of a variant is `variant.weights(q64, k64, spec) @ repeat_kv(v64, groups)`: its own
plain weights in float64 on the same (rounded) inputs. `kernel_error` measures the fast path
against it; `approx_error` measures the variant against exact full attention (dense, float64).
"""
from __future__ import annotations

import math

import pytest
import torch

from attn import variants
from attn.inputs import random_qkv
from attn.spec import AttentionSpec
from attn.variants.gqa import repeat_kv

# small variant budgets so that every mask and approximation actually drops something
BASE = dict(batch=2, heads=2, head_dim=8, window=5, block=4, n_global=1, n_random=1, top_k=6,
            features=16, rank=7)

# (id, spec changes): odd lengths, kv_seq on both sides of seq, both causal alignments,
# GQA and MQA, and windows / blocks longer than the sequence
SHAPES = [
    ("square", dict(seq=17)),
    ("square-causal", dict(seq=17, causal=True)),
    ("more-keys-causal-br", dict(seq=13, kv_seq=29, causal=True)),
    ("more-keys-causal-tl", dict(seq=13, kv_seq=29, causal=True, causal_align="top_left")),
    ("more-keys", dict(seq=13, kv_seq=29)),
    ("more-queries-causal-br", dict(seq=29, kv_seq=13, causal=True)),
    ("more-queries-causal-tl", dict(seq=29, kv_seq=13, causal=True, causal_align="top_left")),
    ("more-queries", dict(seq=29, kv_seq=13)),
    ("gqa-causal", dict(seq=23, heads=4, kv_heads=2, causal=True)),
    ("gqa", dict(seq=23, kv_seq=19, heads=4, kv_heads=2)),
    ("mqa-causal", dict(seq=19, kv_seq=31, heads=4, kv_heads=1, causal=True)),
    ("mqa-tl", dict(seq=31, kv_seq=19, heads=4, kv_heads=1, causal=True, causal_align="top_left")),
    ("wide-window-causal", dict(seq=21, kv_seq=25, window=64, block=64, top_k=64, rank=64,
                                causal=True)),
    ("wide-window", dict(seq=21, window=64, block=64, top_k=64, rank=64)),
    ("one-query", dict(seq=1, kv_seq=9, causal=True)),
    # queries 64.. of a top_left mask sit past the last key: whole chunks see nothing
    ("long-queries-tl", dict(seq=150, kv_seq=20, causal=True, causal_align="top_left")),
    ("blocks-64", dict(seq=70, kv_seq=75, block=16, n_global=1, n_random=2, window=9, causal=True)),
]
TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (0 when both are 0, as for rows that see nothing)."""
    out, ref = out.double(), ref.double()
    ref_norm = ref.norm().item()
    diff = (out - ref).norm().item()
    return diff / ref_norm if ref_norm else diff


def own_reference(variant, q, k, v, spec: AttentionSpec) -> torch.Tensor:
    """The variant's own math in float64 on the same inputs."""
    q64, k64, v64 = q.double(), k.double(), v.double()
    return variant.weights(q64, k64, spec) @ repeat_kv(v64, spec.groups)


def full_attention(q, k, v, spec: AttentionSpec) -> torch.Tensor:
    """Exact full attention with the spec's causal flag, in float64."""
    return variants.get("dense").run(q.double(), k.double(), v.double(), spec)


def skip_unsupported(variant, spec: AttentionSpec) -> None:
    reasons = variant.unsupported(spec, "cpu")
    if reasons:
        pytest.skip("; ".join(reasons))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [changes for _, changes in SHAPES], ids=[i for i, _ in SHAPES])
@pytest.mark.parametrize("name", variants.names())
def test_kernel_matches_own_float64_math(name, shape, dtype):
    spec = AttentionSpec(**{**BASE, **shape, "dtype": dtype})
    variant = variants.get(name)
    skip_unsupported(variant, spec)
    q, k, v = random_qkv(spec)
    out = variant.run(q, k, v, spec)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert torch.isfinite(out).all()
    assert relative_error(out, own_reference(variant, q, k, v, spec)) < TOLERANCE[dtype]


def test_every_contract_name_is_registered():
    assert set(variants.names()) >= {"dense", "sdpa", "sliding_window", "block_sparse", "topk",
                                     "linear", "performer", "linformer"}
    with pytest.raises(ValueError, match="unknown variant 'nope'.*dense"):
        variants.get("nope")


def test_linformer_says_why_it_cannot_be_causal():
    linformer = variants.get("linformer")
    assert linformer.unsupported(AttentionSpec(seq=16), "cpu") == []
    reasons = linformer.unsupported(AttentionSpec(seq=16, causal=True), "cpu")
    assert reasons and "causal" in reasons[0]


@pytest.mark.parametrize("name", variants.names())
def test_weights_for_some_rows_are_those_rows_of_all_weights(name):
    spec = AttentionSpec(**{**BASE, "seq": 19, "kv_seq": 23, "heads": 4, "kv_heads": 2,
                            "causal": name != "linformer", "dtype": "float64"})
    q, k, _ = random_qkv(spec)
    variant = variants.get(name)
    rows = torch.tensor([0, 5, 18])
    every_row = variant.weights(q, k, spec)
    assert every_row.shape == (spec.batch, spec.heads, spec.seq, spec.kv_seq)
    torch.testing.assert_close(variant.weights(q, k, spec, rows), every_row[:, :, rows])


@pytest.mark.parametrize("backend", ["math", "flash"])
@pytest.mark.parametrize("shape", ["square-causal", "more-keys-causal-br", "more-queries-causal-br",
                                   "more-queries-causal-tl", "mqa-causal", "gqa"])
def test_sdpa_cpu_backends_agree_with_dense(backend, shape):
    spec = AttentionSpec(**{**BASE, **dict(SHAPES)[shape], "backend": backend})
    q, k, v = random_qkv(spec)
    out = variants.get("sdpa").run(q, k, v, spec)
    assert relative_error(out, full_attention(q, k, v, spec)) < 1e-5


def test_sdpa_says_which_backends_need_a_gpu():
    sdpa = variants.get("sdpa")
    assert sdpa.unsupported(AttentionSpec(backend="auto"), "cpu") == []
    assert "CUDA" in sdpa.unsupported(AttentionSpec(backend="cudnn"), "cpu")[0]
    assert "head_dim 320 > 256" in " ".join(
        sdpa.unsupported(AttentionSpec(backend="flash", head_dim=320, dtype="bfloat16"), "cuda"))


def _fake_gpu_backends(monkeypatch, times_ms: dict[str, float | str]) -> list[str]:
    """sdpa's auto on a pretend GPU: every backend allowed, each 'timed' from `times_ms` (a
    string: the backend raises that). Returns the log of backends timed."""
    from attn.variants import sdpa

    timed: list[str] = []

    def fake_time(name, q, k, v, spec):
        timed.append(name)
        if isinstance(times_ms[name], str):
            raise RuntimeError(times_ms[name] + "\nmore lines of torch's warning")
        return times_ms[name]

    monkeypatch.setattr(sdpa, "static_reasons", lambda spec, device, backend: [])
    monkeypatch.setattr(sdpa, "_time_backend", fake_time)
    monkeypatch.setattr(sdpa, "_auto_choice", {})
    monkeypatch.setattr(sdpa, "_auto_reasons", {})
    return timed


def test_sdpa_auto_picks_the_fastest_backend_once_per_shape(monkeypatch):
    from attn.variants import sdpa

    # the H100's order: cuDNN ahead of flash, efficient behind, math far behind
    timed = _fake_gpu_backends(monkeypatch, {"cudnn": 0.8, "flash": 1.3, "efficient": 1.9,
                                             "math": 9.0})
    spec = AttentionSpec(**BASE, causal=True)
    q, k, v = random_qkv(spec)
    assert sdpa.backend_used(q, k, v, spec) == "cudnn"
    assert sorted(timed) == sorted(sdpa.BACKENDS)
    assert sdpa.backend_used(q, k, v, spec) == "cudnn"
    assert len(timed) == len(sdpa.BACKENDS), "the choice is cached per shape"
    assert sdpa.auto_reasons(q, k, spec)["flash"] == "flash: 1.3 ms"
    longer = spec.with_(seq=spec.seq * 2, kv_seq=spec.kv_seq * 2)
    sdpa.backend_used(*random_qkv(longer), longer)
    assert len(timed) == 2 * len(sdpa.BACKENDS), "a new shape is timed again"
    # a named backend is used as named, without timing
    assert sdpa.backend_used(q, k, v, spec.with_(backend="math")) == "math"
    assert len(timed) == 2 * len(sdpa.BACKENDS)


def test_sdpa_auto_skips_a_backend_that_fails_and_says_why(monkeypatch):
    from attn.variants import sdpa

    _fake_gpu_backends(monkeypatch, {"cudnn": "No available kernel", "flash": 1.3,
                                     "efficient": 1.1, "math": 9.0})
    spec = AttentionSpec(**BASE)
    q, k, v = random_qkv(spec)
    assert sdpa.backend_used(q, k, v, spec) == "efficient"
    assert sdpa.auto_reasons(q, k, spec)["cudnn"] == "cudnn: No available kernel"


def test_sdpa_auto_says_when_no_backend_runs(monkeypatch):
    from attn.variants import sdpa

    _fake_gpu_backends(monkeypatch, dict.fromkeys(sdpa.BACKENDS, "No available kernel"))
    spec = AttentionSpec(**BASE)
    with pytest.raises(RuntimeError, match="no sdpa backend can run this shape: cudnn: No"):
        sdpa.backend_used(*random_qkv(spec), spec)


# -- approx_error: what each variant drops ---------------------------------------------------
def approx_error(name: str, spec: AttentionSpec, qkv=None) -> float:
    q, k, v = qkv if qkv is not None else random_qkv(spec)
    out = variants.get(name).run(q, k, v, spec)
    return relative_error(out, full_attention(q, k, v, spec))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ["dense", "sdpa"])
def test_dense_and_sdpa_are_exact(name, causal):
    spec = AttentionSpec(seq=37, kv_seq=45, heads=4, kv_heads=2, head_dim=16, causal=causal,
                         dtype="float64")
    assert approx_error(name, spec) < 1e-12


@pytest.mark.parametrize("shape", [dict(seq=40, causal=True), dict(seq=40),
                                   dict(seq=30, kv_seq=44, causal=True),
                                   dict(seq=44, kv_seq=30, causal_align="bottom_right"),
                                   dict(seq=30, kv_seq=44, causal=True, causal_align="top_left")])
def test_sliding_window_is_exact_when_the_window_covers_every_key(shape):
    spec = AttentionSpec(heads=2, head_dim=16, dtype="float64", **shape)
    covers = spec.kv_seq + abs(spec.position_offset)
    assert approx_error("sliding_window", spec.with_(window=covers)) < 1e-12
    errors = [approx_error("sliding_window", spec.with_(window=w)) for w in (24, 12, 6, 2)]
    assert errors[0] > 1e-3
    assert errors == sorted(errors), errors  # a narrower window drops more keys


@pytest.mark.parametrize("causal", [False, True])
def test_block_sparse_is_exact_when_its_layout_covers_everything(causal):
    spec = AttentionSpec(seq=50, kv_seq=61, heads=2, head_dim=16, causal=causal, dtype="float64",
                         block=8, n_global=0, n_random=0)
    assert approx_error("block_sparse", spec.with_(n_global=8)) < 1e-12  # every block global
    assert approx_error("block_sparse", spec.with_(block=64)) < 1e-12  # one block
    assert approx_error("block_sparse", spec) > 1e-2  # local blocks only


def test_topk_is_exact_once_it_keeps_every_key_and_improves_with_k():
    spec = AttentionSpec(seq=33, kv_seq=40, heads=2, head_dim=16, causal=True, dtype="float64")
    assert approx_error("topk", spec.with_(top_k=40)) < 1e-12
    assert approx_error("topk", spec.with_(top_k=400)) < 1e-12
    errors = [approx_error("topk", spec.with_(top_k=t)) for t in (32, 16, 8, 2)]
    assert errors[0] > 0 and errors == sorted(errors), errors


@pytest.mark.parametrize("causal", [False, True])
def test_performer_error_shrinks_with_features(causal):
    # FAVOR+ estimates exp(q.k/sqrt(d)) with a variance that grows like exp(|q' + k'|^2),
    # q' = q / d^(1/4): with unit normal q and k at d=16 that is about e^8, and even 1024
    # features leave an error near 1. Halving q and k (scores of std 1/4, as with normalised
    # queries and keys) puts it where the 1/sqrt(features) law shows. One draw of random
    # features is noisy: average over seeds (each draws new inputs and new features).
    def mean_error(features: int) -> float:
        total = 0.0
        for seed in range(4):
            spec = AttentionSpec(seq=64, heads=2, head_dim=16, features=features, causal=causal,
                                 seed=seed, dtype="float64")
            q, k, v = random_qkv(spec)
            total += approx_error("performer", spec, (q / 2, k / 2, v))
        return total / 4

    errors = [mean_error(f) for f in (16, 64, 256, 1024)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < errors[0] / 3, errors  # 64x the features: about 1/8 of the error


def smooth_qkv(spec: AttentionSpec) -> tuple[torch.Tensor, ...]:
    """Keys and values that vary slowly along the sequence: a few low-frequency waves.

    Linformer here pools neighbouring keys into one; that loses little when neighbours are
    alike, and finer pooling (a higher rank) then gets closer to full attention. On iid random
    keys every pooled key is an average of unrelated keys, and the error need not fall with rank.
    """
    gen = torch.Generator().manual_seed(spec.seed)
    pos = torch.linspace(0, 1, spec.kv_seq, dtype=torch.float64)
    freqs = torch.arange(1, 4, dtype=torch.float64)
    waves = torch.cat([torch.sin(2 * math.pi * freqs[:, None] * pos),
                       torch.cos(2 * math.pi * freqs[:, None] * pos)])  # (6, KV)

    def smooth(heads: int) -> torch.Tensor:
        mix = torch.randn(spec.batch, heads, spec.head_dim, waves.shape[0], generator=gen,
                          dtype=torch.float64)
        return (mix @ waves).transpose(-1, -2)  # (B, heads, KV, D)

    q = torch.randn(spec.batch, spec.heads, spec.seq, spec.head_dim, generator=gen,
                    dtype=torch.float64)
    return q, smooth(spec.kv_heads), smooth(spec.kv_heads)


def test_linformer_is_exact_at_full_rank_and_improves_with_rank_on_smooth_keys():
    spec = AttentionSpec(seq=48, kv_seq=64, heads=2, head_dim=16, dtype="float64")
    assert approx_error("linformer", spec.with_(rank=64)) < 1e-12
    assert approx_error("linformer", spec.with_(rank=1000)) < 1e-12
    qkv = smooth_qkv(spec)
    # ranks dividing kv_seq: each segment of a rank splits into two of the next
    errors = [approx_error("linformer", spec.with_(rank=r), qkv) for r in (2, 4, 8, 16, 32, 64)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 1e-12 < errors[-2]


@pytest.mark.parametrize("shape", [dict(seq=20, causal=True), dict(seq=20),
                                   dict(seq=25, kv_seq=12, causal=True),
                                   dict(seq=12, kv_seq=25, causal=True, causal_align="top_left")])
def test_linear_implied_weights_are_row_normalised_and_causal(shape):
    spec = AttentionSpec(heads=4, kv_heads=2, head_dim=8, dtype="float64", **shape)
    q, k, _ = random_qkv(spec)
    w = variants.get("linear").weights(q, k, spec)
    assert (w >= 0).all()
    visible = torch.ones(spec.seq, spec.kv_seq, dtype=torch.bool)
    if spec.causal:
        visible = torch.arange(spec.kv_seq)[None, :] <= torch.arange(spec.seq)[:, None] + spec.position_offset
    assert (w[..., ~visible] == 0).all()  # no mass on future keys
    sees_something = visible.any(-1)
    torch.testing.assert_close(w.sum(-1)[..., sees_something],
                               torch.ones_like(w.sum(-1)[..., sees_something]))
    assert (w.sum(-1)[..., ~sees_something] == 0).all()
    # it is a different kernel from softmax, not a copy of it
    assert approx_error("linear", spec) > 1e-2


def test_sdpa_names_an_unknown_backend():
    # the backend's declaration refuses it when the spec is made, naming the choices
    with pytest.raises(ValueError, match="unknown backend 'flsh': choose one of auto, cudnn, flash"):
        AttentionSpec(backend="flsh")


# -- FlexAttention compiled for the CPU ----------------------------------------------------------
FLEX_CASES = [
    # GQA, causal bottom-right with more queries than keys: rows 0..22 see nothing
    ("sliding_window", dict(seq=150, kv_seq=127, heads=4, kv_heads=2, window=33, causal=True)),
    ("sliding_window", dict(seq=96, kv_seq=200, window=40)),
    ("block_sparse", dict(seq=200, kv_seq=181, block=32, n_random=2, causal=True)),
    ("block_sparse", dict(seq=130, heads=4, kv_heads=1, block=16, causal=True,
                          causal_align="top_left")),
]


@pytest.mark.slow
def test_flex_attention_compiles_on_the_cpu_and_matches_the_reference():
    """The CUDA path of the masked variants, compiled here for the CPU (tens of seconds).

    Not skipped when FlexAttention cannot compile: then the CUDA path is broken too, and the
    error should say why.
    """
    from attn.variants.masked import flex_attention

    for name, shape in FLEX_CASES:
        spec = AttentionSpec(**{"batch": 1, "heads": 2, "head_dim": 16, **shape})
        variant = variants.get(name)
        q, k, v = random_qkv(spec)
        out = flex_attention(q, k, v, spec, variant.mask(spec), name)
        assert out.shape == q.shape
        assert relative_error(out, own_reference(variant, q, k, v, spec)) < 1e-5, (name, shape)


# -- the blockwise CPU kernel's plan --------------------------------------------------------------
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_blockwise_kernel_runs_equal_chunks_as_one_call(kv_heads):
    """Inside a long window every chunk has as many keys, equally spaced and masked alike:
    the plan runs them as one SDPA call over strided views. Block layouts gather their keys."""
    from attn.variants import masked, softmax

    spec = AttentionSpec(batch=2, seq=700, kv_seq=650, heads=4, kv_heads=kv_heads, head_dim=16,
                         causal=True, window=100, block=32, n_global=1, n_random=2)
    q, k, v = random_qkv(spec)
    # a (B, S, H, D) layout seen as (B, H, S, D), as models hand q over: strides are honoured
    q = q.transpose(1, 2).contiguous().transpose(1, 2)
    for name, chunk in (("sliding_window", 32), ("block_sparse", spec.block)):
        variant = variants.get(name)
        phase = -spec.position_offset if name == "block_sparse" else 0  # chunks = position blocks
        plan = softmax.chunk_plan(variant.mask(spec), spec.seq, chunk, q.dtype, q.device, phase)
        assert max(run.count for run in plan.runs) > 5
        # queries 0..49 see no key (bottom-right, 50 more queries than keys): chunks with no
        # visible key are left out; a chunk that straddles query 50 marks its empty rows
        covered = sum(run.rows * run.count for run in plan.runs)
        if name == "sliding_window":
            assert covered == spec.seq - 32
            assert plan.runs[0].lo == 32 and plan.runs[0].empty.sum() == 50 - 32
        else:  # chunks aligned with position blocks: the first starts at query 50
            assert covered == spec.seq - 50 and plan.runs[0].lo == 50
        if name == "block_sparse":
            assert any(run.index is not None and run.count > 1 for run in plan.runs)
        key = masked.mask_cache_key(name, spec, "cpu")
        out = softmax.blockwise_attention(q, k, v, spec, variant.mask(spec), chunk, key, phase)
        assert relative_error(out, own_reference(variant, q, k, v, spec)) < 1e-5
        # the cached plan gives the same answer
        again = softmax.blockwise_attention(q, k, v, spec, variant.mask(spec), chunk, key, phase)
        assert torch.equal(out, again)


def test_blockwise_kernel_zeroes_rows_outside_every_chunk():
    # top_left, 300 queries against 40 keys, window 8: queries from 47 on see nothing at all
    from attn.variants import softmax

    spec = AttentionSpec(seq=300, kv_seq=40, heads=2, head_dim=8, causal=True,
                         causal_align="top_left", window=8)
    plan = softmax.chunk_plan(variants.get("sliding_window").mask(spec), spec.seq, 16,
                              torch.float32, torch.device("cpu"))
    assert not plan.covers_every_row
    q, k, v = random_qkv(spec)
    out = variants.get("sliding_window").run(q, k, v, spec)
    assert (out[:, :, 47:] == 0).all() and (out[:, :, :47] != 0).any(-1).all()


@pytest.mark.slow
def test_flex_attention_keeps_compiling_past_dynamos_recompile_limit(caplog):
    """Each new mask is a recompile; past dynamo's default limit (8) flex_attention would fall
    back, with only a log line, to an unfused path that materialises seq x kv_seq scores."""
    import logging

    from attn.variants.masked import flex_attention

    caplog.set_level(logging.WARNING)
    for window in range(3, 25, 2):  # eleven masks
        spec = AttentionSpec(batch=1, seq=64, heads=1, head_dim=16, window=window, causal=True)
        q, k, v = random_qkv(spec)
        variant = variants.get("sliding_window")
        out = flex_attention(q, k, v, spec, variant.mask(spec), "sliding_window")
        assert relative_error(out, own_reference(variant, q, k, v, spec)) < 1e-5
    assert not [r for r in caplog.records if "recompile_limit" in r.getMessage()]
