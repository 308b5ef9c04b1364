"""sigmoid: sigmoid(QK^T/sqrt(d) + b) V, each score squashed on its own (Ramapuram et al. 2024).

No softmax: a row's weights do not sum to 1, and no key competes with another for them. The
paper's bias b = -log(n), n the number of keys, keeps the total weight of a row near what a
softmax gives at the start of training; here n is kv_seq (a decode step's context).

Parameters: b = sigmoid_bias - log(kv_seq) when sigmoid_log_n (the default: b = -log kv_seq),
else b = sigmoid_bias. Two plain parameters rather than a number with a sentinel for "-log n",
so that every value of each means one thing, the spec stays hashable and the CLI, the sidebar
and a link carry them as any other (docs/decisions.md).

`exact` is False. In attn an exact variant computes softmax attention over the pairs it keeps,
so its approx_error (against softmax attention with the same causal flag) is 0 once it keeps
every pair, and its mask is "the pairs computed". Sigmoid attention is exact on its own math
(kernel_error against its float64 weights) but is a different function from softmax: its
approx_error is what replacing the softmax changes, and stays above 0 with every key.
FLOPs: useful FLOPs, 4*B*H*D per visible (query, key) pair (q k^T and weights @ v), as for
dense; the sigmoid is one elementwise op per pair, like the softmax's exp, and not counted.
"""
from __future__ import annotations

import math

import torch

from attn.params import Param
from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.gqa import repeat_kv
from attn.variants.registry import Variant, register

# unbounded: the sidebar's field for a bounded number is whole-numbered; the spec still refuses
# a value that is not a number
BIAS = Param("sigmoid_bias", 0.0, "added to every scaled score before the sigmoid (after "
             "-log kv_seq when sigmoid_log_n)")
LOG_N = Param("sigmoid_log_n", True, "subtract log(kv_seq) from every score, the bias of "
              "Ramapuram et al. 2024")


def bias(spec: AttentionSpec) -> float:
    """The b of sigmoid(QK^T/sqrt(d) + b) for this spec."""
    return spec.sigmoid_bias - (math.log(spec.kv_seq) if spec.sigmoid_log_n else 0.0)


def weights(q, k, spec: AttentionSpec, rows=None):
    return dense.activated_weights(q, k, spec, rows, torch.sigmoid, 1.0 / math.sqrt(q.shape[-1]),
                                   bias(spec))


def run(q, k, v, spec: AttentionSpec):
    return weights(q, k, spec) @ repeat_kv(v, spec.groups)  # (B, H, S, D)


VARIANT = register(Variant(
    name="sigmoid",
    title="Sigmoid",
    summary="sigmoid(QK^T/sqrt(d) + b) V, b = -log(kv_seq) by default: no softmax, rows do not sum to 1.",
    run=run,
    weights=weights,
    color="#b45309",
    params=(BIAS, LOG_N),
    **dense.activated_fields(),
))
