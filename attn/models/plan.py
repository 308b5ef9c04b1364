"""A plan for a model: per layer full attention, a sliding window or a block-sparse layout, and
its attention activation; for the whole model, how many key/value heads it keeps.

    plan = parse_plan("0-4:sliding_window:128,5:sdpa", layers=6, kv_heads=1)
    str(plan)                           # "0-4:sliding_window:128,5:full,kv:1" (parses back to plan)
    changed = apply_plan(load_model("minilm"), plan)   # a changed copy; the original is untouched

The compact form is comma-separated entries `LAYERS:KIND[:PARAM][:ACTIVATION]`, LAYERS one layer
(`3`), a range (`0-4`) or `all`; KIND `full` (alias `sdpa`, `dense`), `sliding_window:W` or
`block_sparse:B` (B tokens a block, BigBird's 1 global and 1 random block); ACTIVATION softmax,
sigmoid or relu. Layers no entry names are full softmax. A final `kv:N` keeps N key/value heads.

The model is changed through transformers' own attention interface: one function is registered
as "attn_plan" (with transformers' eager mask builder under the same name) and the copy's config
points at it; each attention module carries its layer's plan, which the function reads. The
model's code is not copied. Key/value heads are pooled as the GQA paper initialises uptraining:
the key and value projections of a group are mean-pooled (see docs/decisions.md for GPT-2).
"""
from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass, replace

import torch
from torch import nn

from attn import variants
from attn.models.capture import attention_modules
from attn.models.sources import LoadedModel
from attn.spec import AttentionSpec, divisors

IMPLEMENTATION = "attn_plan"
KINDS = ("full", "sliding_window", "block_sparse")
KIND_ALIASES = {"full": "full", "sdpa": "full", "dense": "full", "eager": "full",
                "sliding_window": "sliding_window", "window": "sliding_window",
                "block_sparse": "block_sparse"}
ACTIVATIONS = ("softmax", "sigmoid", "relu")
ACTIVATION_NOTE = ("softmax(s); sigmoid(s - log n); relu(s) / n; s the scaled scores, n the keys "
                   "a query may see under the model's own mask (padding, causality)")
PLAN_ATTR = "_attn_plan_layer"  # set on each attention module of a planned copy


@dataclass(frozen=True)
class LayerPlan:
    """One layer: which keys each query sees, and how scores become weights."""

    kind: str = "full"  # full | sliding_window | block_sparse
    param: int | None = None  # the window (sliding_window) or the block size (block_sparse)
    activation: str = "softmax"

    def __str__(self) -> str:
        parts = [self.kind] + ([str(self.param)] if self.param is not None else [])
        if self.activation != "softmax":
            parts.append(self.activation)
        return ":".join(parts)

    def spec_params(self) -> dict:
        """The attn variant parameters of this layer's mask."""
        if self.kind == "sliding_window":
            return {"window": self.param}
        if self.kind == "block_sparse":
            return {"block": self.param}
        return {}


@dataclass(frozen=True)
class Plan:
    layers: tuple[LayerPlan, ...]
    kv_heads: int | None = None  # None: the model's own key/value heads

    def __str__(self) -> str:
        entries, start = [], 0
        for i in range(1, len(self.layers) + 1):  # runs of equal layers become ranges
            if i == len(self.layers) or self.layers[i] != self.layers[start]:
                where = str(start) if i - 1 == start else f"{start}-{i - 1}"
                entries.append(f"{where}:{self.layers[start]}")
                start = i
        if self.kv_heads is not None:
            entries.append(f"kv:{self.kv_heads}")
        return ",".join(entries)

    def is_identity(self) -> bool:
        return self.kv_heads is None and all(x == LayerPlan() for x in self.layers)

    def to_dict(self) -> dict:
        return {"plan": str(self), "kv_heads": self.kv_heads, "activation_convention": ACTIVATION_NOTE,
                "layers": [{"layer": i, "kind": x.kind, "param": x.param, "activation": x.activation}
                           for i, x in enumerate(self.layers)]}


def identity_plan(layers: int) -> Plan:
    return Plan(tuple(LayerPlan() for _ in range(layers)))


def _activation(name: str) -> str:
    name = name.strip().lower()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose {', '.join(ACTIVATIONS)}")
    return name


def _whole(text: str, what: str) -> int:
    if not re.fullmatch(r"-?\d+", text.strip()):
        raise ValueError(f"{what} must be a whole number, got {text!r}")
    return int(text)


def _layer_range(text: str, layers: int) -> range:
    text = text.strip().lower()
    if text in ("all", "*"):
        return range(layers)
    lo_text, _, hi_text = text.partition("-")
    lo = _whole(lo_text, "a layer")
    hi = _whole(hi_text, "a layer") if hi_text else lo
    for index in (lo, hi):
        if not 0 <= index < layers:
            raise ValueError(f"layer {index} is out of range: the model has layers 0-{layers - 1}")
    if hi < lo:
        raise ValueError(f"layer range {text} runs backwards: write {hi}-{lo}")
    return range(lo, hi + 1)


def _layer_plan(fields: list[str], activation: str) -> LayerPlan:
    kind = KIND_ALIASES.get(fields[0].strip().lower()) if fields else None
    if kind is None:
        raise ValueError(f"unknown layer kind {fields[0] if fields else ''!r}: choose full (or sdpa), "
                         "sliding_window:W or block_sparse:B")
    rest, param = fields[1:], None
    if kind != "full":
        what = "window" if kind == "sliding_window" else "block size"
        if not rest or not re.fullmatch(r"-?\d+", rest[0].strip()):
            raise ValueError(f"{kind} needs its {what}, e.g. {kind}:128")
        param = int(rest.pop(0))
        if param < 1:
            raise ValueError(f"a {what} must be at least 1 token, got {param}")
    if len(rest) > 1:
        raise ValueError(f"too many fields in {':'.join(fields)!r}: write LAYERS:KIND[:PARAM][:ACTIVATION]")
    return LayerPlan(kind, param, _activation(rest[0]) if rest else activation)


def parse_plan(text: str, layers: int, kv_heads: int | None = None, activation: str | None = None,
               heads: int | None = None, model_kv_heads: int | None = None) -> Plan:
    """The plan `text` describes for a model of `layers` layers; ValueError in one line otherwise.

    `activation` is the default of layers that name none; `kv_heads` sets the key/value heads
    (so does a `kv:N` entry). With `heads` (and `model_kv_heads`) the head count is checked.
    """
    default = _activation(activation) if activation else "softmax"
    chosen: list[LayerPlan | None] = [None] * layers
    text_kv = None
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        where, sep, rest = entry.partition(":")
        if not sep:
            raise ValueError(f"plan entry {entry!r} has no kind: write LAYERS:KIND, e.g. 0-4:sliding_window:128")
        if where.strip().lower() == "kv":
            text_kv = _whole(rest, "kv heads")
            continue
        layer_plan = _layer_plan(rest.split(":"), default)
        for index in _layer_range(where, layers):
            if chosen[index] is not None:
                raise ValueError(f"layer {index} is planned twice: name each layer once")
            chosen[index] = layer_plan
    if kv_heads is not None and text_kv is not None and kv_heads != text_kv:
        raise ValueError(f"the plan says kv:{text_kv} and --kv-heads says {kv_heads}: give one")
    kv = kv_heads if kv_heads is not None else text_kv
    if kv is not None and heads is not None:
        check_kv_heads(kv, heads, model_kv_heads or heads)
    return Plan(tuple(x or LayerPlan(activation=default) for x in chosen), kv)


def check_kv_heads(kv_heads: int, heads: int, model_kv_heads: int) -> None:
    if kv_heads < 1 or heads % kv_heads:
        listed = divisors(heads)  # bounded: a hostile config may claim 10^30 heads
        raise ValueError(f"{kv_heads} key/value heads do not divide the {heads} attention heads: "
                         + (f"choose one of {', '.join(map(str, listed))}" if listed else "choose a divisor"))
    if model_kv_heads % kv_heads:
        raise ValueError(f"{kv_heads} key/value heads cannot be pooled from the model's {model_kv_heads}: "
                         f"choose a divisor of {model_kv_heads}")


# -- running a plan --------------------------------------------------------------------------------
def _plan_mask(layer: LayerPlan, q_len: int, kv_len: int, causal: bool, device) -> torch.Tensor | None:
    """(q_len, kv_len) booleans of the layer's window or block layout, from attn's own variants
    (queries at the last q_len positions, as a cache places them); None for full attention."""
    if layer.kind == "full":
        return None
    spec = AttentionSpec(seq=q_len, kv_seq=kv_len, heads=1, head_dim=1, causal=causal,
                         **layer.spec_params())
    fn = variants.get(layer.kind).mask(spec).fn
    return fn(torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :]).to(device)


def plan_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float | None = None,
                   dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' attention-function signature: q (B, H, T, D), k and v (B, KVH, S, D) and the
    model's mask (eager's additive floats, or booleans); returns ((B, T, H, D), weights)."""
    layer: LayerPlan = getattr(module, PLAN_ATTR, LayerPlan())
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    fast = _sparse_kernel(module, layer, query, key, value, attention_mask, scaling, dropout)
    if fast is not None:
        return fast, None
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped heads: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    q_len, kv_len = scores.shape[-2:]
    if attention_mask is None:
        allowed = None
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask[..., :kv_len]
    else:  # eager's mask: 0 where visible, the dtype's minimum where not
        allowed = attention_mask[..., :kv_len] > torch.finfo(attention_mask.dtype).min / 2
    # sigmoid's and relu's n: the keys each query may see under the model's own mask (padding,
    # causality), before the plan's. Per row, so that a decoder gives the same outputs over the
    # whole text at once as token by token with its cache (a fixed n = kv_seq would not)
    n = (allowed.sum(-1, keepdim=True).clamp(min=1).to(scores.dtype) if allowed is not None
         else torch.full((), kv_len, dtype=scores.dtype, device=scores.device))
    extra = _plan_mask(layer, q_len, kv_len, bool(getattr(module, "is_causal", False)), scores.device)
    if extra is not None:
        allowed = extra if allowed is None else allowed & extra
    if layer.activation == "softmax":
        if allowed is not None:
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
    elif layer.activation == "sigmoid":
        weights = torch.sigmoid(scores - torch.log(n))
    else:
        weights = torch.relu(scores) / n
    if allowed is not None and layer.activation != "softmax":
        weights = weights * allowed
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights.to(value.dtype), value).transpose(1, 2).contiguous()
    return out, weights


def _sparse_kernel(module: nn.Module, layer: LayerPlan, query: torch.Tensor, key: torch.Tensor,
                   value: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float,
                   dropout: float) -> torch.Tensor | None:
    """A softmax window or block layout through attn's own kernel, which reads only the keys the
    layout keeps (so the measured time shows the saving); None where it does not apply: other
    activations, dropout, or a model mask that hides more than causality (padding)."""
    if layer.kind == "full" or layer.activation != "softmax" or (dropout and module.training):
        return None
    b, heads, q_len, head_dim = query.shape
    kv_len = key.shape[2]
    causal = bool(getattr(module, "is_causal", False))
    if attention_mask is not None:
        visible = (attention_mask if attention_mask.dtype == torch.bool
                   else attention_mask > torch.finfo(attention_mask.dtype).min / 2)[..., :kv_len]
        plain = torch.ones(q_len, kv_len, dtype=torch.bool, device=visible.device)
        if causal:
            plain = plain.tril(kv_len - q_len)
        if not bool((visible == plain).all()):
            return None
    dtype = str(query.dtype).removeprefix("torch.")
    spec = AttentionSpec(batch=b, seq=q_len, kv_seq=kv_len, heads=heads, kv_heads=key.shape[1],
                         head_dim=head_dim, dtype=dtype, causal=causal, device=query.device.type,
                         **layer.spec_params())
    # attn's kernels scale by 1/sqrt(D): fold the model's own scaling into the queries
    query = query * (scaling * head_dim ** 0.5)
    out = variants.get(layer.kind).run(query, key, value, spec)
    return out.transpose(1, 2).contiguous()


_registered = threading.Lock()


def register_plan_attention() -> None:
    """Register the plan's attention function (and eager's mask builder) with transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

    with _registered:
        AttentionInterface.register(IMPLEMENTATION, plan_attention)
        if IMPLEMENTATION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
            AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)


def _pooled_rows(weight: torch.Tensor, old: int, new: int, dim: int) -> torch.Tensor:
    """Mean of each group of old/new consecutive heads along `dim` (heads * head_dim wide)."""
    shape = list(weight.shape)
    head_dim = shape[dim] // old
    grouped = weight.reshape(*shape[:dim], new, old // new, head_dim, *shape[dim + 1:])
    return grouped.mean(dim + 1).reshape(*shape[:dim], new * head_dim, *shape[dim + 1:])


def _pooled_linear(linear: nn.Linear, old: int, new: int) -> nn.Linear:
    pooled = nn.Linear(linear.in_features, linear.out_features * new // old, bias=linear.bias is not None,
                       device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        pooled.weight.copy_(_pooled_rows(linear.weight, old, new, 0))
        if linear.bias is not None:
            pooled.bias.copy_(_pooled_rows(linear.bias, old, new, 0))
    return pooled


def _pool_kv(module: nn.Module, style: str, old: int, new: int, heads: int) -> None:
    """Mean-pool the key and value projections of each group of old/new key/value heads."""
    if style == "bert":  # BERT views k and v with -1 heads, so narrower projections give fewer
        module.key = _pooled_linear(module.key, old, new)
        module.value = _pooled_linear(module.value, old, new)
    elif style == "rope":
        module.k_proj = _pooled_linear(module.k_proj, old, new)
        module.v_proj = _pooled_linear(module.v_proj, old, new)
        module.num_key_value_groups = heads // new
    else:  # GPT-2's fused c_attn splits q, k, v at equal widths: the pooled k and v columns are
        # repeated to every head of their group (the same outputs; docs/decisions.md)
        with torch.no_grad():
            w, b = module.c_attn.weight, module.c_attn.bias  # Conv1D: (d, 3d), (3d,)
            d = module.split_size
            for part in (slice(d, 2 * d), slice(2 * d, 3 * d)):
                pooled = _pooled_rows(w[:, part], old, new, 1)
                w[:, part] = pooled.reshape(w.shape[0], new, -1).repeat_interleave(heads // new, 1).reshape(w.shape[0], d)
                pooled_b = _pooled_rows(b[part], old, new, 0)
                b[part] = pooled_b.reshape(new, -1).repeat_interleave(heads // new, 0).reshape(d)


def apply_plan(loaded: LoadedModel, plan: Plan) -> LoadedModel:
    """A copy of the model that runs `plan`; the loaded model itself is not changed."""
    from attn.models.costs import model_shape

    shape = model_shape(loaded.config)
    if len(plan.layers) != shape.layers:
        raise ValueError(f"the plan has {len(plan.layers)} layers and {loaded.name} has {shape.layers}")
    if shape.window and any(x.kind == "block_sparse" for x in plan.layers):
        raise ValueError(f"{loaded.name} already has a sliding window of {shape.window}: "
                         "plan full or sliding_window layers on it, not block_sparse")
    if plan.kv_heads is not None:
        check_kv_heads(plan.kv_heads, shape.heads, shape.kv_heads)
    register_plan_attention()
    with loaded.lock:
        model = copy.deepcopy(loaded.model)
    modules = attention_modules(model, shape.layers)
    for (module, style), layer in zip(modules, plan.layers):
        setattr(module, PLAN_ATTR, layer)
        if plan.kv_heads is not None and plan.kv_heads != shape.kv_heads:
            _pool_kv(module, style, shape.kv_heads, plan.kv_heads, shape.heads)
    if plan.kv_heads is not None and shape.family == "llama":
        model.config.num_key_value_heads = plan.kv_heads  # the cache and the cost tables read it
    model.set_attn_implementation(IMPLEMENTATION)
    if model.config._attn_implementation != IMPLEMENTATION:  # transformers only warns
        raise ValueError(f"{type(model).__name__} cannot switch to a registered attention function")
    return replace(loaded, name=f"{loaded.name} [{plan}]", model=model, config=model.config,
                   attn_implementation=IMPLEMENTATION, num_parameters=model.num_parameters(),
                   lock=threading.RLock())


def plan_for(loaded_or_config, text: str, kv_heads: int | None = None,
             activation: str | None = None) -> Plan:
    """parse_plan with the layer and head counts read from a model (or its config)."""
    from attn.models.costs import model_shape

    config = getattr(loaded_or_config, "config", loaded_or_config)
    s = model_shape(config)
    return parse_plan(text, s.layers, kv_heads, activation, heads=s.heads, model_kv_heads=s.kv_heads)

