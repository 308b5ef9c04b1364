"""What one attention head does, in a few numbers: entropy, distance, sink and diagonal mass, and
how many keys hold 90% of a row's weight. A block of query rows gives row sums (`StatSums`) that
add up to the head's `HeadStats`, so attn.maps computes them while it walks a head block by block.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor

MASS_FRACTION = 0.9  # keys_for_90
# weights are float32; an exact tie with 90% (uniform rows) must not tip over by rounding
MASS_TOLERANCE = 1e-9


@dataclass
class HeadStats:
    """What one head does, as averages over its query rows.

    Only rows that see at least one key count (with bottom-right causal and seq > kv_seq the
    first queries see none; their weights are all 0 and say nothing about the head), and of the
    variants whose rows need not sum to 1 (sigmoid, relu) only rows of some weight (a relu row
    whose scores are all negative weighs nothing and has no distribution).
    Entropy, distance and keys_for_90 read a row as a distribution: p_ij = w_ij / sum_j w_ij
    (the same as w for a softmax row). sink_mass and diagonal_mass are the weights as drawn.
    entropy_bits: mean of -sum_j p_ij log2 p_ij.
    entropy_normalised: mean of entropy / log2(visible keys of the row), in [0, 1]: 1 is uniform
        over what the row may see. A row that sees one key has no choice to make and counts as 0.
        Visible keys are those the variant's mask allows (all keys when it has none; top-k's
        choice is not a mask, so its rows are measured against the keys it chose among).
    mean_distance: mean of sum_j p_ij |pos_i - j|, pos_i = i + spec.position_offset, the
        query's position on the key axis.
    sink_mass: mean weight on key 0 (attention sinks).
    diagonal_mass: mean w[i, pos_i], over the rows whose own position is a key (0 <= pos_i <
        kv_seq); 0 when no row has one.
    keys_for_90: mean over rows of the fewest keys that hold 90% of the row's mass.
    """

    head: int
    kv_head: int
    batch: int
    rows: int
    entropy_bits: float
    entropy_normalised: float
    mean_distance: float
    sink_mass: float
    diagonal_mass: float
    keys_for_90: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StatSums:
    """Sums over rows, so that blocks of rows add up to the head's statistics."""

    rows: int = 0
    entropy: float = 0.0
    entropy_normalised: float = 0.0
    distance: float = 0.0
    sink: float = 0.0
    diagonal: float = 0.0
    diagonal_rows: int = 0
    keys_for_90: float = 0.0

    def add(self, other: "StatSums") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def finish(self, head: int, kv_head: int, batch: int) -> HeadStats:
        n = max(self.rows, 1)
        return HeadStats(
            head=head, kv_head=kv_head, batch=batch, rows=self.rows,
            entropy_bits=self.entropy / n,
            entropy_normalised=self.entropy_normalised / n,
            mean_distance=self.distance / n,
            sink_mass=self.sink / n,
            diagonal_mass=self.diagonal / max(self.diagonal_rows, 1),
            keys_for_90=self.keys_for_90 / n,
        )


def keys_for_mass(w: Tensor, fraction: float = MASS_FRACTION) -> Tensor:
    """Per row, the fewest keys that hold `fraction` of the row's mass: (rows,) int64.

    Largest first until the running sum reaches fraction * row total. Counted from the other
    end: the most smallest keys whose sum stays <= (1 - fraction) * total are the ones not needed.
    """
    if w.device.type == "cpu":
        # numpy's vectorised sort is ~10x torch's on the CPU, and the sort dominates head_stats
        ascending = np.sort(w.numpy(), axis=-1)
        prefix = np.cumsum(ascending, axis=-1, dtype=np.float64)
        total = prefix[:, -1:]
        spare = (prefix <= (1.0 - fraction) * total * (1 + MASS_TOLERANCE)).sum(-1)
        return torch.from_numpy(w.shape[-1] - spare)
    ascending = w.sort(-1).values
    prefix = ascending.double().cumsum(-1)
    total = prefix[:, -1:]
    spare = (prefix <= (1.0 - fraction) * total * (1 + MASS_TOLERANCE)).sum(-1)
    return (w.shape[-1] - spare).cpu()


def block_sums(w: Tensor, positions: Tensor, visible: Tensor) -> StatSums:
    """Row statistics of a (rows x kv) block, summed over the rows that see any key."""
    kv = w.shape[-1]
    seen = w.sum(-1) > 0
    if not bool(seen.any()):
        return StatSums()
    if not bool(seen.all()):
        w, positions, visible = w[seen], positions[seen], visible[seen]
    # entropy and distance are of a distribution over keys: a row that does not sum to 1
    # (sigmoid, relu) is normalised for them only; for a softmax row this divides by ~1
    p = w / w.sum(-1, keepdim=True)
    entropy = -torch.special.xlogy(p, p).sum(-1) / math.log(2)
    log_visible = visible.to(w.dtype).clamp(min=1).log2()
    normalised = torch.where(visible > 1, entropy / log_visible.clamp(min=1e-30),
                             torch.zeros_like(entropy))
    keys = torch.arange(kv, device=w.device, dtype=w.dtype)
    distance = (positions.to(w.dtype)[:, None] - keys[None, :]).abs_().mul_(p).sum(-1)
    on_diagonal = (positions >= 0) & (positions < kv)
    diagonal = w.gather(1, positions.clamp(0, kv - 1)[:, None])[:, 0][on_diagonal]
    return StatSums(
        rows=int(w.shape[0]),
        entropy=float(entropy.sum()),
        entropy_normalised=float(normalised.sum()),
        distance=float(distance.sum()),
        sink=float(w[:, 0].sum()),
        diagonal=float(diagonal.sum()),
        diagonal_rows=int(on_diagonal.sum()),
        keys_for_90=float(keys_for_mass(w).sum()),
    )
