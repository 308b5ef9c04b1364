"""linear: kernelised linear attention (Katharopoulos et al., 2020) with phi(x) = elu(x) + 1."""
from __future__ import annotations

import torch.nn.functional as F

from attn.spec import AttentionSpec
from attn.variants import dense
from attn.variants.kernelized import (implied_weights, kernelized_attention, kernelized_flops,
                                      recurrent_decoder, recurrent_flops, state_bytes,
                                      visible_pairs)
from attn.variants.registry import Variant, register


def elu_plus_one(x, is_query: bool, spec: AttentionSpec):
    return F.elu(x) + 1.0


def extra_bytes(spec: AttentionSpec) -> int:
    # features of q and k, the (D x D) running sums per head, and the numerator, its
    # normalised copy and the zero-guarded output, all at float32 or wider (measured on the CPU)
    width = max(4, spec.dtype_bytes)
    features = spec.batch * (spec.heads * spec.seq + spec.kv_heads * spec.kv_seq) * spec.head_dim
    sums = 2 * spec.batch * spec.heads * spec.head_dim * spec.head_dim
    outputs = 3 * spec.batch * spec.heads * spec.seq * spec.head_dim
    return (features + sums + outputs) * width


VARIANT = register(Variant(
    name="linear",
    title="Linear (elu+1)",
    summary="Kernelised attention with phi(x) = elu(x)+1: O(S*D^2) instead of O(S^2*D); "
            "causal through prefix sums. An approximation: it is not softmax.",
    exact=False,
    run=lambda q, k, v, spec: kernelized_attention(elu_plus_one, q, k, v, spec),
    weights=lambda q, k, spec, rows=None: implied_weights(elu_plus_one, q, k, spec, rows),
    pairs=visible_pairs,
    flops=lambda spec: kernelized_flops(spec, spec.head_dim),
    extra_bytes=extra_bytes,
    color="#ec4899",
    mask=dense.causal_mask,
    decode_keys=lambda spec: 0,
    decode_state_bytes=lambda spec: state_bytes(spec, spec.head_dim),
    decode_flops=lambda spec: recurrent_flops(spec, spec.head_dim),
    decoder=recurrent_decoder(elu_plus_one),
))
