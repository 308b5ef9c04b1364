"""How far a variant's output is from float64 references: kernel_error against the variant's own
math, approx_error against exact attention, both on a sample of query rows when every row would
be too large to check.
"""
from __future__ import annotations

import torch

from attn import variants
from attn.spec import AttentionSpec
from attn.variants.gqa import repeat_kv

# reference outputs are computed for a sample of query rows in float64; this bounds their size
REFERENCE_BYTES = 256 * 2**20
# query rows checked against the float64 references: 128 rows of every batch item and head give
# a steady relative error, and keep the check to a fraction of the timing (bench/profiler_fidelity.py)
ERROR_ROWS = 128


def sample_rows(spec: AttentionSpec, max_rows: int) -> torch.Tensor | None:
    """Query rows to check errors on: all when few, else evenly spaced (first and last kept)."""
    per_row = spec.batch * spec.heads * spec.kv_seq * 8 * 3  # weights, scores, float64
    limit = max(1, min(max_rows, REFERENCE_BYTES // per_row))
    if spec.seq <= limit:
        return None
    return torch.linspace(0, spec.seq - 1, limit).round().long().unique()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    denom = ref.norm().item()
    diff = (out.double() - ref).norm().item()
    return diff / denom if denom > 0 else diff


def errors(out: torch.Tensor, q, k, v, spec: AttentionSpec, variant: str,
           max_rows: int = ERROR_ROWS) -> tuple[float, float, int]:
    """(kernel_error, approx_error, rows checked): against this variant's own math in float64,
    and against exact full attention with the same causal flag in float64."""
    rows = sample_rows(spec, max_rows)
    q64, k64, v64 = (t.double() for t in (q, k, v))
    v64 = repeat_kv(v64, spec.groups)
    got = out if rows is None else out.index_select(2, rows.to(out.device))
    mine, exact = variants.get(variant).weights, variants.get("dense").weights
    ref = mine(q64, k64, spec, rows) @ v64
    # dense and sdpa share the plain math: one float64 reference serves both errors
    full = ref if mine is exact else exact(q64, k64, spec, rows) @ v64
    n = spec.seq if rows is None else rows.numel()
    return relative_error(got, ref), relative_error(got, full), n
