"""Grouped-query sharing in one place: every variant widens k and v with this helper."""
from __future__ import annotations

import torch


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, KVH, KV, D) -> (B, KVH * groups, KV, D); query head h reads kv head h // groups."""
    if groups == 1:
        return x
    b, kvh, n, d = x.shape
    return x[:, :, None].expand(b, kvh, groups, n, d).reshape(b, kvh * groups, n, d)
