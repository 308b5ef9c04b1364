"""relu: relu(QK^T/sqrt(d)) / kv_seq V, each score rectified on its own (Wortsman et al. 2023).

No softmax: a row's weights do not sum to 1 (a row whose scores are all negative weighs
nothing). Dividing by the number of keys, kv_seq (a decode step's context), keeps a row's total
weight from growing with the length. No parameter of its own.

`exact` is False for the reason sigmoid's is (attn/variants/sigmoid.py): it is exact on its own
math, but approx_error against softmax attention measures a different function and stays above
0 with every key. FLOPs: useful FLOPs, 4*B*H*D per visible pair, as for dense.
"""
from __future__ import annotations

import math

import torch

from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.gqa import repeat_kv
from attn.variants.registry import Variant, register


def weights(q, k, spec: AttentionSpec, rows=None):
    # relu(s) / n == relu(s / n) for n > 0: the division rides on the scale, so autograd keeps
    # one matrix (relu's output, which the product with v shares) rather than two
    scale = 1.0 / (math.sqrt(q.shape[-1]) * spec.kv_seq)
    return dense.activated_weights(q, k, spec, rows, torch.relu, scale)


def run(q, k, v, spec: AttentionSpec):
    return weights(q, k, spec) @ repeat_kv(v, spec.groups)  # (B, H, S, D)


VARIANT = register(Variant(
    name="relu",
    title="ReLU",
    summary="relu(QK^T/sqrt(d)) / kv_seq V: no softmax, rows do not sum to 1.",
    run=run,
    weights=weights,
    color="#1e3a8a",
    **dense.activated_fields(),
))
