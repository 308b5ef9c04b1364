"""The FLOP cross-check: torch's FLOP counter against the cost model's useful FLOPs, and why the
two differ where they do. The cost model's count is the one attn reports (see attn.cost).
"""
from __future__ import annotations

from typing import Callable

from attn import variants
from attn.cost import USEFUL_FLOPS_NOTE
from attn.spec import AttentionSpec


def counted_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode  # lazy: ~25 ms to import

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_note(variant: str, spec: AttentionSpec, useful: int, counted: int, device: str) -> str:
    """The cost model's FLOPs against torch's FLOP counter, and why they differ where they do."""
    if counted == useful:
        return f"{USEFUL_FLOPS_NOTE}; torch's FLOP counter agrees"
    every_pair = 4 * spec.batch * spec.heads * spec.head_dim * spec.seq * spec.kv_seq
    ratio = counted / max(useful, 1)
    if counted == 0:
        why = ("the counter sees no FLOPs in the CPU's fused SDPA kernel"
               if variants.get(variant).fused_on_cpu and not device.startswith("cuda")
               else "the counter sees no matmuls in this call")
    elif spec.causal and counted == every_pair:
        why = ("the counter counts every (query, key) pair of a causal call, the masked half "
               "included, as if it were dense")
    elif counted > useful:
        why = f"the counter also counts computed-then-masked scores and helper matmuls ({ratio:.2f}x)"
    elif not variants.get(variant).exact:
        why = (f"the counter counts matmuls only ({ratio:.2f}x); the cost model also counts the "
               f"feature maps, sums and normalisation")
    else:
        why = f"the counter sees {ratio:.2f}x of the cost model's count"
    return f"{USEFUL_FLOPS_NOTE}; torch's FLOP counter says {counted:,}: {why}"
