"""block_sparse's pairs, widest row and decode keys are closed forms over query blocks: equal to
what the drawn layout holds, and computed without drawing it (a cost at the layout limit took
2 s, and a decode step at 4G tokens of context 17 s, drawing rows of 67M key blocks)."""
import random

import pytest
import torch

from attn.cost import attention_cost
from attn.masks import sum_clamped
from attn.regimes import decode_spec
from attn.spec import AttentionSpec
from attn.variants import block_sparse as bs


def _from_layout(spec: AttentionSpec) -> tuple[int, torch.Tensor]:
    """Pairs and blocks a row, counted cell by cell on the drawn layout (the reference)."""
    layout, first = bs.block_layout(spec)
    off, block = spec.position_offset, spec.block
    qb, kb = layout.nonzero().unbind(1)
    qb = qb + first
    q_start = torch.clamp(qb * block, min=off)
    n_q = torch.clamp((qb + 1) * block, max=off + spec.seq) - q_start
    k_start = kb * block
    n_k = torch.clamp((kb + 1) * block, max=spec.kv_seq) - k_start
    cells = sum_clamped(q_start - k_start + 1, n_q, n_k) if spec.causal else n_q * n_k
    return int(cells.sum()), layout.sum(1)


def _random_spec(rng: random.Random) -> AttentionSpec:
    seq = rng.randint(1, 300)
    return AttentionSpec(seq=seq, kv_seq=rng.choice([seq, rng.randint(1, 300)]), heads=1, head_dim=4,
                         causal=rng.random() < 0.6, causal_align=rng.choice(["bottom_right", "top_left"]),
                         block=rng.randint(1, 40), n_global=rng.randint(0, 3), n_random=rng.randint(0, 4),
                         seed=rng.randint(0, 99))


def test_row_counts_equal_the_drawn_layout():
    rng = random.Random(0)
    for _ in range(250):
        spec = _random_spec(rng)
        pairs, blocks = _from_layout(spec)
        first = spec.position_offset // spec.block
        rows = [bs.row_counts(spec, first + i) for i in range(blocks.shape[0])]
        assert [b for _, b in rows] == blocks.tolist(), spec
        assert sum(p for p, _ in rows) == pairs == bs.block_sparse_pairs(spec), spec
        assert bs.layout_totals(spec)[1] == int(blocks.max()), spec


def test_decode_keys_equal_the_drawn_rows():
    rng = random.Random(1)
    for _ in range(200):
        context = rng.randint(1, 600)
        spec = decode_spec(AttentionSpec(seq=1, heads=1, head_dim=4, causal=True, block=rng.randint(1, 40),
                                         n_global=rng.randint(0, 3), n_random=rng.randint(0, 4),
                                         seed=rng.randint(0, 99)), context, rng.randint(1, min(context, 70)))
        assert bs.decode_keys(spec) == bs.block_sparse_mask(spec).keys_for(0, spec.seq).numel(), spec


def test_random_blocks_are_distinct_whole_candidates_drawn_uniformly():
    counts = torch.zeros(20, dtype=torch.int64)
    for seed in range(1500):
        picks = bs._random_blocks(torch.tensor([12]), 1, 20, 20, True, 3, seed)[0]
        assert len(set(picks.tolist())) == 3
        counts += torch.bincount(picks, minlength=20)
    # candidates of query block 12 under a causal mask: 1..10 (0 is global, 11 and 12 local)
    assert counts[0] == counts[11:].sum() == 0
    assert counts[1:11].min() > 0.8 * 450 and counts[1:11].max() < 1.2 * 450


def test_a_partial_last_block_is_never_drawn():
    spec = AttentionSpec(seq=100, kv_seq=100, heads=1, head_dim=4, block=16, n_global=0, n_random=5)
    layout, _ = bs.block_layout(spec)
    assert not layout[:5, 6].any()  # block 6 holds keys 96..99; rows 0..4 hold it neither locally


def test_layout_totals_sum_rows_exactly_at_lengths_past_any_layout():
    # long enough that the runs between landmarks are long, small enough to count row by row
    rng = random.Random(2)
    for _ in range(60):
        block = rng.randint(1, 8)
        seq = rng.randint(1, 3000)
        spec = AttentionSpec(seq=seq, kv_seq=rng.choice([seq, rng.randint(1, 3000)]), heads=1, head_dim=4,
                             causal=rng.random() < 0.6, causal_align=rng.choice(["bottom_right", "top_left"]),
                             block=block, n_global=rng.randint(0, 5), n_random=rng.randint(0, 9))
        first = spec.position_offset // block
        last = (spec.position_offset + seq - 1) // block
        rows = [bs.row_counts(spec, qb) for qb in range(first, last + 1)]
        assert bs.layout_totals(spec) == (sum(p for p, _ in rows), max(b for _, b in rows)), spec


def test_cost_at_any_length_is_exact_on_python_ints():
    spec = AttentionSpec(seq=10 ** 18, heads=64, head_dim=128, causal=True)
    pairs = bs.block_sparse_pairs(spec)
    assert isinstance(pairs, int) and pairs > 10 ** 18 * 64 * 2  # at least the local band
    assert attention_cost(spec, "block_sparse", "forward").flops == 4 * 64 * 128 * pairs


@pytest.mark.parametrize("mode", ["forward", "train", "decode"])
def test_cost_at_the_layout_limit_never_draws_the_layout(monkeypatch, mode):
    def refuse(*args):
        raise AssertionError("the cost drew the layout")
    monkeypatch.setattr(bs, "_layout", refuse)
    spec = AttentionSpec(seq=8192 * 64, heads=2, kv_heads=1, head_dim=64, causal=True)
    if mode == "decode":
        spec = decode_spec(spec.with_(seq=1), 2 ** 26 * 64 - 64)
    cost = attention_cost(spec, "block_sparse", mode)
    assert cost.flops > 0
