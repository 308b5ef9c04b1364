"""Masks: one function of (q_idx, kv_idx) per pattern, read by kernels, counters and drawings.

These tests hold the readers together: the weights of every masked variant are zero exactly
where its mask is False, the blockwise kernel's key ranges cover every visible key, and rows
that see no key give zeros everywhere.
"""
from __future__ import annotations

import random

import pytest
import torch

from attn import masks, variants
from attn.inputs import random_qkv
from attn.spec import AttentionSpec
from attn.variants.gqa import repeat_kv


def brute_force_causal(seq: int, kv_seq: int, offset: int) -> torch.Tensor:
    return torch.tensor([[j <= i + offset for j in range(kv_seq)] for i in range(seq)])


def brute_force_window(seq: int, kv_seq: int, offset: int, window: int, causal: bool) -> torch.Tensor:
    def sees(i: int, j: int) -> bool:
        distance = i + offset - j
        return 0 <= distance < window if causal else abs(distance) < window
    return torch.tensor([[sees(i, j) for j in range(kv_seq)] for i in range(seq)])


def visible(spec: AttentionSpec, name: str) -> torch.Tensor:
    """The (seq x kv_seq) booleans of a variant's mask; all True when it has none."""
    mask = variants.get(name).mask(spec)
    if mask is None:
        return torch.ones(spec.seq, spec.kv_seq, dtype=torch.bool)
    return masks.materialise(mask.fn, spec.seq, spec.kv_seq)


@pytest.mark.parametrize("seq,kv_seq,align", [(5, 5, "bottom_right"), (4, 7, "bottom_right"),
                                              (7, 4, "bottom_right"), (4, 7, "top_left"),
                                              (7, 4, "top_left")])
def test_causal_alignment(seq, kv_seq, align):
    spec = AttentionSpec(seq=seq, kv_seq=kv_seq, causal=True, causal_align=align)
    expected = brute_force_causal(seq, kv_seq, spec.position_offset)
    assert torch.equal(masks.materialise(masks.generate_causal(spec.position_offset), seq, kv_seq),
                       expected)
    if align == "bottom_right":
        assert expected[-1].all()  # the last query sees every key, as when decoding
    else:
        assert expected[0].sum() == 1  # query 0 sees key 0 only, like torch's is_causal
    assert masks.causal_pairs(spec) == int(expected.sum())


def test_bottom_right_with_more_queries_than_keys_leaves_the_first_rows_empty():
    spec = AttentionSpec(seq=6, kv_seq=4, causal=True)
    allowed = visible(spec, "dense")
    assert allowed.sum(-1).tolist() == [0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq,kv_seq,window", [(9, 9, 3), (5, 12, 4), (12, 5, 2), (6, 6, 20)])
def test_sliding_window_mask_and_pairs(seq, kv_seq, window, causal):
    spec = AttentionSpec(seq=seq, kv_seq=kv_seq, window=window, causal=causal)
    expected = brute_force_window(seq, kv_seq, spec.position_offset, window, causal)
    assert torch.equal(visible(spec, "sliding_window"), expected)
    assert masks.sliding_window_pairs(spec) == int(expected.sum())


def test_sum_clamped_matches_a_loop():
    rng = random.Random(0)
    for _ in range(200):
        start, count, hi = rng.randint(-30, 30), rng.randint(0, 30), rng.randint(0, 20)
        expected = sum(min(max(start + t, 0), hi) for t in range(count))
        assert int(masks.sum_clamped(start, count, hi)) == expected


def test_block_sparse_layout_is_local_global_and_random():
    spec = AttentionSpec(seq=64, block=8, n_global=1, n_random=1, seed=3)
    layout, first = variants.block_sparse.block_layout(spec)
    assert first == 0 and layout.shape == (8, 8)
    assert layout[:, 0].all() and layout[0].all()  # the global block sees and is seen by all
    for i in range(1, 8):
        local = {j for j in (i - 1, i, i + 1) if 0 <= j < 8}
        extra = set(layout[i].nonzero().flatten().tolist()) - local - {0}
        assert len(extra) == 1  # one random block per row
    # the same seed gives the same layout; another seed, another
    assert torch.equal(layout, variants.block_sparse.block_layout(spec)[0])
    assert not torch.equal(layout, variants.block_sparse.block_layout(spec.with_(seed=4))[0])


def test_causal_block_sparse_draws_random_blocks_from_the_past_only():
    spec = AttentionSpec(seq=64, block=8, n_global=1, n_random=2, causal=True)
    layout, _ = variants.block_sparse.block_layout(spec)
    random_part = layout & ~((torch.arange(8)[:, None] - torch.arange(8)[None, :]).abs() <= 1)
    random_part[:, 0] = False
    random_part[0] = False
    assert not torch.triu(random_part, diagonal=1).any()


def random_masked_spec(rng: random.Random) -> AttentionSpec:
    return AttentionSpec(
        seq=rng.randint(1, 90), kv_seq=rng.randint(1, 90), heads=1, head_dim=4,
        causal=rng.random() < 0.6, causal_align=rng.choice(["bottom_right", "top_left"]),
        window=rng.randint(1, 40), block=rng.randint(1, 24), n_global=rng.randint(0, 2),
        n_random=rng.randint(0, 2), seed=rng.randint(0, 100))


@pytest.mark.parametrize("name", ["dense", "sliding_window", "block_sparse"])
def test_keys_for_covers_every_visible_key(name):
    """The blockwise kernel computes only keys_for(lo, hi): missing one would drop mass."""
    rng = random.Random(1)
    for _ in range(40):
        spec = random_masked_spec(rng)
        mask = variants.get(name).mask(spec)
        if mask is None:
            continue
        allowed = masks.materialise(mask.fn, spec.seq, spec.kv_seq)
        for chunk in (1, 7, 32):
            for lo in range(0, spec.seq, chunk):
                hi = min(spec.seq, lo + chunk)
                keys = mask.keys_for(lo, hi)
                outside = torch.ones(spec.kv_seq, dtype=torch.bool)
                outside[keys] = False
                assert not allowed[lo:hi, outside].any(), (spec, lo, hi)
                assert keys.numel() == keys.unique().numel()


MASKED = ["dense", "sdpa", "sliding_window", "block_sparse"]
SPECS = {
    "causal-br": dict(seq=23, kv_seq=30, causal=True),
    "causal-tl": dict(seq=30, kv_seq=23, causal=True, causal_align="top_left"),
    "not-causal": dict(seq=23, kv_seq=30),
    "gqa-dead-rows": dict(seq=30, kv_seq=23, heads=4, kv_heads=2, causal=True),
}


@pytest.mark.parametrize("shape", SPECS.values(), ids=SPECS.keys())
@pytest.mark.parametrize("name", MASKED)
def test_weights_are_zero_exactly_where_the_mask_is_false(name, shape):
    spec = AttentionSpec(**{"heads": 2, "head_dim": 8, "window": 6, "block": 4, "n_global": 1,
                            "n_random": 1, "dtype": "float64", **shape})
    q, k, _ = random_qkv(spec)
    w = variants.get(name).weights(q, k, spec)
    allowed = visible(spec, name).expand_as(w)
    assert (w[~allowed] == 0).all()
    assert (w[allowed] > 0).all()


@pytest.mark.parametrize("name", ["topk", "linear", "performer"])
def test_approximations_put_no_weight_on_future_keys(name):
    spec = AttentionSpec(seq=30, kv_seq=23, heads=4, kv_heads=2, head_dim=8, causal=True,
                         top_k=5, features=32, dtype="float64")
    q, k, _ = random_qkv(spec)
    w = variants.get(name).weights(q, k, spec)
    allowed = visible(spec, "dense").expand_as(w)
    assert (w[~allowed] == 0).all()
    if name == "topk":  # the top_k largest of the visible keys, or all of them
        kept = (w > 0).sum(-1)
        assert torch.equal(kept, visible(spec, "dense").sum(-1).clamp(max=5).expand_as(kept))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", variants.names())
def test_rows_that_see_no_key_output_zeros(name, dtype):
    # bottom-right causal with 9 more queries than keys: queries 0..8 see nothing; a
    # non-causal window placed the same way leaves rows 0..5 (distance >= window) empty too
    for causal in (True, False):
        spec = AttentionSpec(seq=20, kv_seq=11, heads=4, kv_heads=2, head_dim=8, causal=causal,
                             window=4, block=4, n_global=0, n_random=0, top_k=3, features=16,
                             rank=5, dtype=dtype)
        variant = variants.get(name)
        if variant.unsupported(spec, "cpu"):
            continue
        mask = variant.mask(spec)
        allowed = masks.materialise(mask.fn, spec.seq, spec.kv_seq) if mask else None
        if allowed is None or allowed.all(-1).all():
            continue  # every row sees a key
        empty = ~allowed.any(-1)
        assert empty.any()
        q, k, v = random_qkv(spec)
        out = variant.run(q, k, v, spec)
        assert torch.isfinite(out).all()
        assert (out[:, :, empty] == 0).all()
        # every other row that gives some key weight outputs something (a relu row whose
        # visible scores are all negative sees keys and rightly weighs them all 0)
        weighted = variant.weights(q, k, spec).ne(0).any(-1)
        assert not weighted[:, :, empty].any() and weighted[:, :, ~empty].any()
        assert out.ne(0).any(-1)[weighted].all()
        reference = variant.weights(q.double(), k.double(), spec) @ repeat_kv(v.double(), 2)
        assert (reference[:, :, empty] == 0).all()
