"""The analytic cost model: pair counts against the masks themselves, FLOPs, bytes, parameters."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from attn import masks, variants
from attn.cost import (attention_cost, io_bytes, kv_cache_bytes_per_token, projection_params,
                       proj_flops)
from attn.inputs import random_qkv
from attn.spec import AttentionSpec

EXACT = ["dense", "sdpa", "sliding_window", "block_sparse"]


def random_specs(seed: int, n: int = 50) -> list[AttentionSpec]:
    """Specs of every kind of mask: both alignments, lengths on both sides, odd blocks."""
    rng = random.Random(seed)
    specs = []
    for _ in range(n):
        heads = rng.choice([1, 2, 4, 8])
        specs.append(AttentionSpec(
            batch=rng.randint(1, 3), seq=rng.randint(1, 200), kv_seq=rng.randint(1, 200),
            heads=heads, kv_heads=rng.choice([d for d in (1, 2, heads) if heads % d == 0]),
            head_dim=rng.choice([8, 64, 80]), causal=rng.random() < 0.6,
            causal_align=rng.choice(["bottom_right", "top_left"]), window=rng.randint(1, 250),
            block=rng.randint(1, 80), n_global=rng.randint(0, 3), n_random=rng.randint(0, 3),
            top_k=rng.randint(1, 250), seed=rng.randint(0, 1000)))
    return specs


SPECS = random_specs(seed=0)


def counted_pairs(spec: AttentionSpec, name: str) -> int:
    """True entries of the variant's own mask (every pair when it has none)."""
    mask = variants.get(name).mask(spec)
    if mask is None:
        return spec.seq * spec.kv_seq
    return int(masks.materialise(mask.fn, spec.seq, spec.kv_seq).sum())


@pytest.mark.parametrize("name", EXACT)
def test_pairs_equal_the_true_entries_of_the_mask(name):
    variant = variants.get(name)
    for spec in SPECS:
        expected = counted_pairs(spec, name)
        assert variant.pairs(spec) == expected, spec
        assert attention_cost(spec, name).pairs == expected, spec


@pytest.mark.parametrize("name", EXACT)
def test_exact_variants_count_four_flops_per_pair_per_channel(name):
    for spec in SPECS:
        cost = attention_cost(spec, name)
        assert cost.exact
        assert cost.flops == 4 * spec.batch * spec.heads * spec.head_dim * cost.pairs


def test_causal_pairs_in_closed_form():
    assert attention_cost(AttentionSpec(seq=1000, causal=True), "dense").pairs == 1000 * 1001 // 2
    assert attention_cost(AttentionSpec(seq=1000), "dense").pairs == 1000 * 1000
    # decoding 10 new tokens against a cache of 100: the last sees 100 keys, the first 91
    assert attention_cost(AttentionSpec(seq=10, kv_seq=100, causal=True), "dense").pairs == sum(
        range(91, 101))
    assert attention_cost(AttentionSpec(seq=10, kv_seq=100, causal=True, causal_align="top_left"),
                          "dense").pairs == sum(range(1, 11))


def test_sliding_window_at_4096_has_an_eighth_of_the_causal_pairs():
    spec = AttentionSpec(seq=4096, causal=True, window=256)
    window = attention_cost(spec, "sliding_window")
    causal = attention_cost(spec, "sdpa")
    assert window.pairs == 256 * 257 // 2 + (4096 - 256) * 256
    assert 7.5 < causal.pairs / window.pairs < 8.5
    assert window.density == window.pairs / causal.pairs


def test_topk_keeps_at_most_top_k_of_the_visible_keys_per_row():
    topk = variants.get("topk")
    for spec in SPECS:
        mask = variants.get("dense").mask(spec)
        if mask is None:
            per_row = torch.full((spec.seq,), spec.kv_seq)
        else:
            per_row = masks.materialise(mask.fn, spec.seq, spec.kv_seq).sum(-1)
        assert topk.pairs(spec) == int(per_row.clamp(max=spec.top_k).sum()), spec


def test_approximations_count_the_work_they_do():
    spec = AttentionSpec(batch=2, seq=1024, heads=8, head_dim=64, top_k=32, features=256,
                         rank=128)
    dense = attention_cost(spec, "dense")
    # topk computes every score, then reads top_k values per query
    topk = attention_cost(spec, "topk")
    assert topk.flops == 2 * 2 * 8 * 64 * (1024 * 1024 + 1024 * 32)
    # linformer: pool k and v to rank rows, then attend to them
    linformer = attention_cost(spec, "linformer")
    assert linformer.pairs == 1024 * 128
    assert linformer.flops == 2 * 2 * 2 * 8 * 128 * 1024 * 64 + 4 * 2 * 8 * 64 * 1024 * 128
    # performer: features of q and k (B*(H*S + KVH*KV) rows x D x F), phi(k)^T v once per key,
    # and each query against the (F x D) sums and the normaliser
    performer = attention_cost(spec, "performer")
    assert performer.flops == (2 * 2 * (8 * 1024 + 8 * 1024) * 64 * 256
                               + 2 * 2 * 8 * 1024 * 256 * 64 + 2 * 2 * 8 * 1024 * 256 * 65)
    assert 0.4 < performer.flops / dense.flops < 0.6  # at 1024 tokens, 256 features save half
    long = spec.with_(seq=16384, kv_seq=16384)  # ... and their cost grows linearly, dense's quadratically
    for name in ("linear", "performer", "linformer"):
        assert attention_cost(long, name).flops < attention_cost(long, "dense").flops / 10, name
        assert not attention_cost(spec, name).exact


def test_projection_cache_and_parameters_by_hand():
    # d_model 512, 8 query heads of 64 sharing 2 key/value heads, bfloat16
    spec = AttentionSpec(batch=2, seq=10, heads=8, kv_heads=2, head_dim=64, d_model=512,
                         dtype="bfloat16")
    # Q and O: 512 -> 8*64 each; K and V: 512 -> 2*64 each; 2 FLOPs per multiply-add
    assert proj_flops(spec) == 2 * 2 * 10 * 512 * (512 + 128 + 128 + 512) == 26_214_400
    # per token and layer: a key and a value of 2 heads x 64 x 2 bytes
    assert kv_cache_bytes_per_token(spec) == 2 * 2 * 64 * 2 == 512
    assert projection_params(spec) == 512 * (512 + 128 + 128 + 512) == 655_360
    cost = attention_cost(spec, "dense")
    assert cost.params == 655_360
    assert cost.params_without_gqa == 512 * 4 * 512 == 1_048_576
    # without GQA the same layer caches 4x as much
    assert kv_cache_bytes_per_token(spec.with_(kv_heads=8)) == 4 * 512
    assert cost.proj_flops == 26_214_400 and cost.kv_cache_bytes_per_token == 512


def test_bytes_by_hand():
    spec = AttentionSpec(batch=1, seq=100, kv_seq=300, heads=4, kv_heads=2, head_dim=16)
    cost = attention_cost(spec, "dense")
    q = 1 * 4 * 100 * 16
    kv = 2 * 1 * 2 * 300 * 16
    assert cost.min_bytes == (q + kv + q) * 4
    # eager attention holds scores and weights (B*H*S*KV each) and the widened k and v
    assert cost.extra_bytes == 2 * 4 * 100 * 300 * 4 + 2 * 4 * 300 * 16 * 4
    assert cost.peak_bytes == cost.min_bytes + cost.extra_bytes
    assert cost.arithmetic_intensity == cost.flops / cost.min_bytes
    # a fused kernel keeps its scores on chip
    assert attention_cost(spec.with_(backend="flash"), "sdpa").extra_bytes == 0
    assert attention_cost(spec.with_(backend="math"), "sdpa").extra_bytes == cost.extra_bytes


@pytest.mark.parametrize("name", ["sliding_window", "block_sparse", "topk"])
def test_masked_workspace_does_not_grow_with_seq_squared(name):
    spec = AttentionSpec(seq=2048, causal=True, window=128, block=64, top_k=32)
    small, large = (attention_cost(spec.with_(seq=s, kv_seq=s), name).extra_bytes
                    for s in (2048, 8192))
    assert large <= 4 * small  # 4x the length: at most 4x the memory; dense needs 16x
    assert large < attention_cost(spec.with_(seq=8192, kv_seq=8192), "dense").extra_bytes / 10


def test_cost_to_dict_has_every_number():
    d = attention_cost(AttentionSpec(seq=64, causal=True), "sliding_window").to_dict()
    assert {"variant", "pairs", "flops", "proj_flops", "min_bytes", "peak_bytes",
            "kv_cache_bytes_per_token", "params", "params_without_gqa", "density"} <= set(d)
    assert d["density"] == 1.0  # the default window (256) covers 64 keys


def test_every_variant_has_a_cost_for_every_random_spec():
    for spec in SPECS[:20]:
        for name in variants.names():
            cost = attention_cost(spec, name)
            assert cost.flops > 0 and cost.pairs > 0, (name, spec)
            assert cost.pairs <= spec.seq * spec.kv_seq


def test_kernelized_own_pairs_in_closed_form_equal_the_chunk_loop():
    from attn.variants.kernelized import causal_chunks, own_pairs

    for seq, kv_seq in itertools.product((1, 5, 63, 64, 65, 200), (1, 7, 64, 130, 300)):
        for align in ("bottom_right", "top_left"):
            spec = AttentionSpec(seq=seq, kv_seq=kv_seq, causal=True, causal_align=align)
            loop = sum((hi - lo) * (own - prefix) for lo, hi, prefix, own in causal_chunks(spec))
            assert own_pairs(spec) == loop, (seq, kv_seq, align)


@pytest.mark.parametrize("variant", ["sdpa", "dense", "sliding_window", "topk", "linear", "performer"])
def test_costs_at_huge_sizes_are_exact_python_ints(variant):
    # regression: int64 pair counts overflowed (and chunk loops hung) at 10^18 tokens
    n = 10**18
    spec = AttentionSpec(seq=n, heads=2, kv_heads=1, head_dim=64, causal=True)
    cost = attention_cost(spec, variant)
    assert cost.full_pairs == n * (n + 1) // 2
    assert cost.flops > 0 and cost.pairs > 0
    if variant in ("sdpa", "dense"):
        assert cost.flops == 4 * 2 * 64 * n * (n + 1) // 2


def test_a_train_step_counts_the_output_once_where_the_forward_keeps_it():
    spec = AttentionSpec(batch=1, seq=256, heads=4, head_dim=32, causal=True)
    inputs, output = io_bytes(spec)
    flash = spec.with_(backend="flash")
    fused = attention_cost(flash, "sdpa", "train")
    # the fused kernel's saved bytes are its output and log-sum-exps: the step holds them once
    assert fused.step_bytes == fused.saved_bytes + fused.backward_bytes + inputs
    eager = attention_cost(spec, "dense", "train")
    assert eager.step_bytes == output + eager.saved_bytes + eager.backward_bytes + inputs

    def kept_by_autograd(name: str, s: AttentionSpec) -> tuple[set[int], int]:
        q, k, v = (t.requires_grad_() for t in random_qkv(s))
        kept: set[int] = set()

        def pack(t):
            kept.add(t.untyped_storage().data_ptr())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = variants.get(name).run(q, k, v, s)
        return kept, out.untyped_storage().data_ptr()

    # as measured: flash keeps the very tensor it returns, eager attention does not
    kept, out = kept_by_autograd("sdpa", flash)
    assert out in kept
    kept, out = kept_by_autograd("dense", spec)
    assert out not in kept
