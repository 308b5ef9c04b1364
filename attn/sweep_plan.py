"""What a sweep runs, decided before any work: the spec at each value of the swept axis, the
checks that can fail first, and the cost model's curve along an axis (nothing run)."""
from __future__ import annotations

from attn import variants
from attn.cost import attention_cost
from attn.regimes import check_mode, is_decode_spec
from attn.spec import AttentionSpec
from attn.timing import check_budget

AXES = ("seq", "batch", "heads", "head_dim", "context")  # context: the cached keys of a decode step


def spec_at(base: AttentionSpec, axis: str, x: int) -> AttentionSpec:
    if axis not in AXES:
        raise ValueError(f"unknown sweep axis {axis!r}: choose one of {', '.join(AXES)}")
    if axis == "seq":
        kv = x if base.kv_seq == base.seq else base.kv_seq
        return base.with_(seq=x, kv_seq=kv)
    if axis == "heads":
        return base.with_(heads=x, kv_heads=max(1, x // base.groups), d_model=None)
    if axis == "context":
        return base.with_(kv_seq=x)
    return base.with_(**{axis: x})


def plan_sweep(base: AttentionSpec, names: list[str], xs: list[int], axis: str, budget_s: float,
               mode: str) -> tuple[list[int], dict[int, AttentionSpec]]:
    """The sorted values and the spec at each, after every check that can fail before any work
    (the local loop and attn.cluster's Ray tasks share it)."""
    check_budget(budget_s)
    for n in names:
        variants.get(n)  # unknown names fail before any work
    xs = sorted(set(xs))
    check_mode(mode)
    specs = {x: spec_at(base, axis, x) for x in xs}  # bad sizes fail before any work
    if mode == "decode":
        for spec in specs.values():
            if not is_decode_spec(spec):
                raise ValueError(f"a decode step needs at least as many cached keys as new tokens: "
                                 f"context {spec.kv_seq} < new_tokens {spec.seq}")
    elif axis == "context":
        raise ValueError("the context axis is for decode sweeps: add --mode decode")
    return xs, specs


def analytic_curve(base: AttentionSpec, variant: str, xs: list[int], axis: str = "seq",
                   mode: str = "forward") -> list[dict]:
    """The cost model along an axis in a regime, without running anything (the small curves)."""
    out = []
    for x in xs:
        c = attention_cost(spec_at(base, axis, x), variant, mode)
        out.append({"x": x, "flops": c.flops, "peak_bytes": c.peak_bytes, "pairs": c.pairs,
                    "saved_bytes": c.saved_bytes, "bytes_read": c.bytes_read})
    return out
