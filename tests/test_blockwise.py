"""The blockwise CPU kernel's plan: what it calls SDPA with, and that it stays exact."""
from __future__ import annotations

import torch

from attn import variants
from attn.inputs import random_qkv
from attn.spec import AttentionSpec
from attn.variants import softmax
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
