"""The blockwise CPU kernel's plan: what it calls SDPA with, and that it stays exact."""
from __future__ import annotations

import torch

from attn import variants
from attn.inputs import random_qkv
from attn.masks import Mask
from attn.spec import AttentionSpec
from attn.variants import masked, softmax
from attn.variants.gqa import repeat_kv


def reference(name: str, q, k, v, spec: AttentionSpec) -> torch.Tensor:
    w = variants.get(name).weights(q.double(), k.double(), spec)
    return w @ repeat_kv(v.double(), spec.groups)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def test_masked_chunks_get_a_multiple_of_16_keys_where_there_is_room():
    # window 40, chunk 32: a chunk sees 71 keys, padded with masked keys to 80
    spec = AttentionSpec(seq=300, kv_seq=300, heads=2, head_dim=16, causal=True, window=40)
    mask = variants.get("sliding_window").mask(spec)
    plan = softmax.chunk_plan(mask, spec.seq, 32, torch.float32, torch.device("cpu"),
                              kv_seq=spec.kv_seq)
    inner = [run for run in plan.runs if run.bias is not None and run.first > 0]
    assert inner and all(run.keys % softmax.KEY_ALIGN == 0 for run in inner)
    assert max(run.count for run in plan.runs) > 3
    q, k, v = random_qkv(spec)
    out = softmax.blockwise_attention(q, k, v, spec, mask, 32)
    assert relative_error(out, reference("sliding_window", q, k, v, spec)) < 1e-5


def test_block_layouts_gather_only_the_keys_off_their_band():
    spec = AttentionSpec(batch=2, seq=700, heads=4, head_dim=16, causal=True, block=32,
                         n_global=1, n_random=1)
    variant = variants.get("block_sparse")
    mask = variant.mask(spec)
    plan = softmax.chunk_plan(mask, spec.seq, spec.block, torch.float32, torch.device("cpu"),
                              kv_seq=spec.kv_seq)
    split = [run for run in plan.runs if run.split is not None]
    assert split
    for run in split:
        band, rest = run.split
        assert band.index is None and band.keys == 2 * spec.block  # the block and the one before
        assert rest.index is not None and band.keys + rest.keys == run.keys
    key = masked.mask_cache_key("block_sparse", spec, "cpu")
    q, k, v = random_qkv(spec)
    out = softmax.blockwise_attention(q, k, v, spec, mask, spec.block, key)
    assert relative_error(out, reference("block_sparse", q, k, v, spec)) < 1e-5


def test_a_split_run_merges_rows_that_see_only_one_part():
    # even queries see the 8 keys up to themselves (the band), odd ones the first 8 keys
    seq = 256

    def fn(i, j):
        band = (j <= i) & (j > i - 8)
        return torch.where(i % 2 == 0, band, j < 8)

    def keys_for(lo, hi):
        return torch.cat([torch.arange(8), torch.arange(max(8, lo - 24), hi)]).unique()

    mask = Mask(fn, keys_for, "odd_even")
    spec = AttentionSpec(seq=seq, heads=2, head_dim=16, causal=True)
    plan = softmax.chunk_plan(mask, seq, 16, torch.float32, torch.device("cpu"), kv_seq=seq)
    split = [run for run in plan.runs if run.split is not None]
    assert split and all(p.empty is not None for run in split for p in run.split)
    q, k, v = random_qkv(spec)
    out = softmax.blockwise_attention(q, k, v, spec, mask, 16)
    allowed = fn(torch.arange(seq)[:, None], torch.arange(seq)[None, :])
    ref = softmax.masked_softmax(q.double() @ k.double().transpose(-1, -2) / 4, allowed) @ v.double()
    assert relative_error(out, ref) < 1e-5
