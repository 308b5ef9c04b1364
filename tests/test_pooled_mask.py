"""The mask pattern the pages draw: the share of visible pairs per cell."""
import torch

from attn import masks, variants
from attn.spec import AttentionSpec


def test_pooled_mask_is_the_share_of_visible_pairs_in_each_cell():
    spec = AttentionSpec(seq=50, kv_seq=70, causal=True, window=9)
    fn = variants.get("sliding_window").mask(spec).fn
    q_edges, k_edges = [0, 7, 30, 50], [0, 10, 11, 40, 70]
    full = masks.materialise(fn, spec.seq, spec.kv_seq).double()
    expected = torch.tensor([[full[a:b, c:d].mean().item() for c, d in zip(k_edges, k_edges[1:])]
                             for a, b in zip(q_edges, q_edges[1:])], dtype=torch.float64)
    got = masks.pooled_mask(fn, spec.seq, spec.kv_seq, q_edges, k_edges, max_rows=4)
    assert torch.allclose(got.double(), expected, atol=1e-6)


def test_pooled_mask_of_a_full_mask_is_all_ones():
    got = masks.pooled_mask(lambda q, k: (q >= 0) & (k >= 0), 8, 8, [0, 4, 8], [0, 2, 8])
    assert torch.equal(got, torch.ones(2, 2))
