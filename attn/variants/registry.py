"""The one registry of attention variants: a name maps to everything attn knows about it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from attn import params as declared_params
from attn.masks import Mask
from attn.params import Param
from attn.spec import AttentionSpec

Tensor = torch.Tensor


def _no_reasons(spec: AttentionSpec, device: str) -> list[str]:
    return []


def _no_mask(spec: AttentionSpec) -> Mask | None:
    return None


def _torch_kernel(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec) -> str:
    return "torch"


def _no_kernel_reasons(q: Tensor, k: Tensor, spec: AttentionSpec) -> dict[str, str]:
    return {}


def _as_given(spec: AttentionSpec, kernel: str) -> AttentionSpec:
    return spec


def _never(spec: AttentionSpec) -> bool:
    return False


def _every_cached_key(spec: AttentionSpec) -> int:
    return spec.kv_seq


def output_bytes(spec: AttentionSpec) -> int:
    return spec.batch * spec.heads * spec.seq * spec.head_dim * spec.dtype_bytes


class SizeLimit(str):
    """A reason a spec cannot run that is about its size here, not about the spec: the cost
    model still answers for it (block_sparse draws no layout past 8192 x 8192 blocks, but its
    pairs are a closed form at any length)."""


@dataclass(frozen=True)
class Variant:
    """An attention variant.

    run(q, k, v, spec) -> out: the fast path. q is (B, H, S, D); k and v are (B, KVH, KV, D).
    weights(q, k, spec, rows) -> (B, H, len(rows), KV): the plain math of this variant's
        attention weights for some query rows (all rows when None). Applied to v in float64 it
        is the variant's reference; the maps draw it. Kernelised variants give their implied,
        row-normalised weights.
    pairs(spec): the unmasked (query, key) pairs per batch item and head.
    flops(spec): FLOPs of the attention core: useful FLOPs (4*B*H*D*pairs) for exact variants,
        the work they actually do for approximations.
    extra_bytes(spec): estimated peak memory of the call beyond its inputs and output.
    params: the variant's own parameters (read as `spec.NAME`); the spec's validation, the CLI
        flags, the sidebar fields, the URL keys and saved runs all come from these declarations.
    color: its colour on every chart.
    unsupported(spec, device): reasons, in words, why this variant cannot run the spec there
        (a `SizeLimit` where only running it at that size is refused: its cost still stands).
    mask(spec): the mask it computes exactly, when it has one.
    kernel(q, k, v, spec): the label of the kernel that ran (after a call), e.g. "flash".
    kernel_reasons(q, k, spec): what it found choosing that kernel, backend by backend.
    fused_on_cpu: its CPU path is torch's fused SDPA kernel, where torch's FLOP counter sees no
        FLOPs (the profile's FLOP note says so).
    """

    name: str
    title: str
    summary: str
    exact: bool
    run: Callable[[Tensor, Tensor, Tensor, AttentionSpec], Tensor]
    weights: Callable[[Tensor, Tensor, AttentionSpec, Tensor | None], Tensor]
    pairs: Callable[[AttentionSpec], int]
    flops: Callable[[AttentionSpec], int]
    extra_bytes: Callable[[AttentionSpec], int]
    color: str
    params: tuple[Param, ...] = ()
    unsupported: Callable[[AttentionSpec, str], list[str]] = field(default=_no_reasons)
    mask: Callable[[AttentionSpec], Mask | None] = field(default=_no_mask)
    kernel: Callable[[Tensor, Tensor, Tensor, AttentionSpec], str] = field(default=_torch_kernel)
    kernel_reasons: Callable[[Tensor, Tensor, AttentionSpec], dict[str, str]] = field(
        default=_no_kernel_reasons)
    fused_on_cpu: bool = False
    # resolved(spec, kernel): the spec with the choice the variant made at run time written in
    # (sdpa auto -> the backend it ran), so the cost model predicts what actually ran
    resolved: Callable[[AttentionSpec, str], AttentionSpec] = field(default=_as_given)
    # -- training (forward + backward) and serving (decode steps against a KV cache) ----------
    # saved_bytes(spec): what the forward keeps for the backward beyond its inputs (None: the
    #   output and the forward's workspace, a rough guess); backward_bytes(spec): the backward's
    #   own workspace beyond the saved tensors and the gradients (None: the forward's workspace)
    saved_bytes: Callable[[AttentionSpec], int] | None = None
    backward_bytes: Callable[[AttentionSpec], int] | None = None
    # the backward recomputes the scores from saved statistics (FlashAttention's way), so it
    # executes more FLOPs than the useful ones
    recomputes: Callable[[AttentionSpec], bool] = field(default=_never)
    # the forward keeps its own output for the backward (a fused kernel keeps O and the
    # log-sum-exps), so saved_bytes already holds the output that a step keeps alive anyway
    saves_output: Callable[[AttentionSpec], bool] = field(default=_never)
    # decode: the cached keys one step reads (spec.seq new queries against spec.kv_seq cached
    #   keys); decode_state_bytes: a recurrent state read instead of keys and values
    decode_keys: Callable[[AttentionSpec], int] = field(default=_every_cached_key)
    decode_state_bytes: Callable[[AttentionSpec], int] | None = None
    # decode_flops(spec): FLOPs of a decode step where it is not the forward's over the cache
    decode_flops: Callable[[AttentionSpec], int] | None = None
    # decoder(q, k, v, spec) -> step(): one decode step prepared the way a server keeps its
    #   cache (k and v hold the whole context, the new tokens last); None: run over the cache
    decoder: Callable[[Tensor, Tensor, Tensor, AttentionSpec], Callable[[], Tensor]] | None = None
    # modes it cannot run, with the reason in words: {"decode": "..."}
    cannot: dict[str, str] = field(default_factory=dict)

    def train_bytes(self, spec: AttentionSpec) -> tuple[int, int]:
        """(saved for the backward, the backward's workspace), estimated."""
        extra = self.extra_bytes(spec)
        saved = self.saved_bytes(spec) if self.saved_bytes else output_bytes(spec) + extra
        backward = self.backward_bytes(spec) if self.backward_bytes else extra
        return saved, backward

    def decode_step(self, q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec) -> Callable[[], Tensor]:
        if self.decoder is not None:
            return self.decoder(q, k, v, spec)
        return lambda: self.run(q, k, v, spec)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add a variant and declare its parameters. A name twice is refused (a silent overwrite
    would change what saved runs mean), and so is a parameter declared differently elsewhere."""
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is registered twice")
    for param in variant.params:
        declared_params.declare(param)
    _REGISTRY[variant.name] = variant
    return variant


def get(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}: choose one of {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    return list(_REGISTRY)


def color_of(name: str) -> str:
    """A variant's colour; a neutral grey for a name no variant has (a run saved by a variant
    that is no longer installed)."""
    variant = _REGISTRY.get(name)
    return variant.color if variant is not None else "#94a3b8"
