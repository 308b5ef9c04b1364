"""Attention of a real model for a text: the weights transformers returns, or q, k, v per layer.

Two routes:
- `capture_attention`: the eager implementation with `output_attentions=True` returns every
  layer's (heads, T, T) weights. Simple, and the reference, but it materialises them all, so it
  is for short inputs. (SDPA and flash return no weights; FlexAttention returns log-sum-exp.)
- `capture_qkv`: forward hooks record the queries, keys and values each attention module
  computes, exactly as its attention function receives them, so `attn.maps` can draw pooled maps
  of any layer at any length without a T x T matrix per layer. Projections are hooked (BERT's
  `query`/`key`/`value`, GPT-2's fused `c_attn`, Llama/Mistral's `q_proj`/`k_proj`/`v_proj`);
  for rotary models a hook on the attention module also takes the `position_embeddings`
  (cos, sin) the model hands it, and the model's own `apply_rotary_pos_emb` rotates q and k,
  since the projections alone are not what the attention sees.

Every captured q is pre-multiplied so that attn's softmax(q k^T / sqrt(D)) equals the model's
softmax(q k^T * scaling): a no-op for all four families at their default settings.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attn import memory, variants
from attn.memory import DoesNotFit
from attn.models.costs import model_shape
from attn.readable import nbytes
from attn.models.sources import DEFAULT_MODEL, LoadedModel, encode, load_model
from attn.spec import AttentionSpec

WEIGHTS_NEED_EAGER = ("attention weights need attn_implementation='eager': sdpa and flash return "
                      "none and flex_attention returns log-sum-exp; load the model with eager, or "
                      "use capture_qkv and attn.maps")


@dataclass(eq=False)
class Capture:
    """Every layer's attention weights for one text (batch item 0)."""

    tokens: list[str]
    attentions: np.ndarray  # (layers, heads, T, T) float32; rows sum to 1
    q: list[np.ndarray] | None = None  # per layer (heads, T, D), as the attention sees it
    k: list[np.ndarray] | None = None  # per layer (kv_heads, T, D)

    @property
    def layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def heads(self) -> int:
        return self.attentions.shape[1]

    @property
    def seq_len(self) -> int:
        return self.attentions.shape[2]


@dataclass(eq=False)
class LayerQKV:
    """One layer's attention inputs, ready for attn: q (B, H, T, D), k and v (B, KVH, T, D)."""

    layer: int
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    spec: AttentionSpec  # heads, kv_heads, head_dim, causal for decoders, window for Mistral
    variant: str  # the attn variant that reproduces this layer: dense or sliding_window

    def weights(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's attention weights (B, H, rows, T) through attn's own variant."""
        return variants.get(self.variant).weights(self.q, self.k, self.spec, rows)


@dataclass(eq=False)
class QKVCapture:
    tokens: list[str]
    layers: list[LayerQKV]  # the layers asked for, in order

    def layer(self, index: int) -> LayerQKV:
        for item in self.layers:
            if item.layer == index:
                return item
        raise ValueError(f"layer {index} was not captured; captured: {[x.layer for x in self.layers]}")


def capture_bytes(loaded: LoadedModel, tokens: int, layers: int, weights: bool) -> int:
    """What a capture keeps beyond the model (float32): q, k and v of `layers` layers, and with
    `weights` every layer's (heads, T, T) weights (twice: the model's, then the stacked copy),
    plus one layer's activations while the forward pass runs (hidden, 3 projections, 4x MLP)."""
    config = loaded.config
    try:
        shape = model_shape(config)
        heads, kv_heads, head_dim, d, ff, n_layers = (shape.heads, shape.kv_heads, shape.head_dim,
                                                      shape.d_model, shape.ff, shape.layers)
    except ValueError:
        # a family the cost tables do not know still returns its weights through transformers
        # (capture_attention): transformers' common config names, an MLP of 4x assumed
        heads, d, n_layers = config.num_attention_heads, config.hidden_size, config.num_hidden_layers
        kv_heads, head_dim, ff = heads, d // heads, 4 * d
    qkv = layers * (heads + 2 * kv_heads) * tokens * head_dim
    attention = 2 * n_layers * heads * tokens * tokens if weights else 0
    activations = tokens * (8 * d + max(ff, 4 * d)) + heads * tokens * tokens
    return 4 * (qkv + attention + activations)


def check_capture_fits(loaded: LoadedModel, tokens: int, layers: int, weights: bool) -> None:
    """DoesNotFit, in one line, before the forward pass, when a capture cannot fit."""
    need, free = capture_bytes(loaded, tokens, layers, weights), memory.free_bytes(loaded.device)
    if need > free:
        raise DoesNotFit(f"does not fit: capturing {loaded.name} on {tokens:,} tokens needs ~{nbytes(need)}, "
                         f"{nbytes(free)} free on {loaded.device}; use fewer tokens (--max-tokens)")


# -- route 1: output_attentions ------------------------------------------------------------------
def capture_attention(loaded: LoadedModel, text: str, max_tokens: int | None = 128,
                      with_qk: bool = False) -> Capture:
    """Tokens and every layer's (heads, T, T) attention weights from transformers itself.

    With `with_qk`, also each layer's q and k as hooks see them (one forward pass for both).
    """
    if loaded.attn_implementation != "eager":
        raise ValueError(WEIGHTS_NEED_EAGER)
    input_ids, tokens = encode(loaded, text, max_tokens)
    check_capture_fits(loaded, input_ids.shape[1], loaded.config.num_hidden_layers if with_qk else 0, True)
    with loaded.lock, torch.no_grad():
        if with_qk:
            with _QKVRecorder(loaded, range(loaded.config.num_hidden_layers)) as recorder:
                out = loaded.model(input_ids=input_ids, output_attentions=True)
            captured = recorder.layers(input_ids.shape[1])
        else:
            out = loaded.model(input_ids=input_ids, output_attentions=True)
    attentions = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()
    if not with_qk:
        return Capture(tokens=tokens, attentions=attentions)
    return Capture(tokens=tokens, attentions=attentions,
                   q=[x.q[0].float().cpu().numpy() for x in captured],
                   k=[x.k[0].float().cpu().numpy() for x in captured])


# -- route 2: hooks on q, k, v ----------------------------------------------------------------------
def capture_qkv(loaded: LoadedModel, text: str, max_tokens: int | None = None,
                layers: list[int] | None = None, attn_implementation: str | None = "sdpa"
                ) -> QKVCapture:
    """q, k, v of some layers (all when None) for one unpadded sequence.

    The model runs under `attn_implementation` for this forward pass only (None keeps its own):
    sdpa by default, so that a long input never materialises a T x T matrix in any layer. The
    hooks see the same q, k, v whichever implementation runs.
    """
    n_layers = loaded.config.num_hidden_layers
    wanted = list(range(n_layers)) if layers is None else sorted(set(layers))
    for index in wanted:
        if not 0 <= index < n_layers:
            raise ValueError(f"layer {index} is out of range: the model has layers 0..{n_layers - 1}")
    input_ids, tokens = encode(loaded, text, max_tokens)
    check_capture_fits(loaded, input_ids.shape[1], len(wanted), attn_implementation == "eager")
    with loaded.lock, torch.no_grad(), switched_implementation(loaded, attn_implementation):
        with _QKVRecorder(loaded, wanted) as recorder:
            loaded.model(input_ids=input_ids)
        return QKVCapture(tokens=tokens, layers=recorder.layers(input_ids.shape[1]))


def captured_qkv(text: str, layer: int, source: str = DEFAULT_MODEL, max_tokens: int | None = 512
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionSpec]:
    """q, k, v and the AttentionSpec of one layer of a real model for `text`: real inputs for
    the variants, so an approximation's approx_error measures what it loses on real attention."""
    loaded = load_model(source)
    item = capture_qkv(loaded, text, max_tokens=max_tokens, layers=[layer]).layers[0]
    return item.q, item.k, item.v, item.spec


class _QKVRecorder:
    """Hooks on the attention modules of some layers; removed on exit, even after an error."""

    def __init__(self, loaded: LoadedModel, wanted) -> None:
        self.loaded = loaded
        self.shape = model_shape(loaded.config)
        self.modules = attention_modules(loaded.model, loaded.config.num_hidden_layers)
        self.wanted = list(wanted)
        self.store: dict[int, dict] = {i: {} for i in self.wanted}
        self.handles: list = []

    def __enter__(self) -> "_QKVRecorder":
        for index in self.wanted:
            module, style = self.modules[index]
            slot = self.store[index]
            if style == "bert":
                for name, attr in (("q", "query"), ("k", "key"), ("v", "value")):
                    self._keep_output(getattr(module, attr), slot, name)
            elif style == "gpt2":
                def fused(_mod, _inputs, out, slot=slot, split=module.split_size):
                    slot["q"], slot["k"], slot["v"] = (t.detach() for t in out.split(split, dim=2))
                self.handles.append(module.c_attn.register_forward_hook(fused))
            else:
                for name, attr in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj")):
                    self._keep_output(getattr(module, attr), slot, name)

                def rotary(_mod, _args, kwargs, slot=slot):
                    slot["rope"] = kwargs.get("position_embeddings")
                self.handles.append(module.register_forward_pre_hook(rotary, with_kwargs=True))
        return self

    def _keep_output(self, module: nn.Module, slot: dict, name: str) -> None:
        def keep(_mod, _inputs, out):
            slot[name] = out.detach()
        self.handles.append(module.register_forward_hook(keep))

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def layers(self, seq_len: int) -> list[LayerQKV]:
        s, result = self.shape, []
        spec = s.spec(seq_len)
        for index in self.wanted:
            module, style = self.modules[index]
            slot = self.store[index]
            q, k, v = (_heads(slot[n], s.head_dim) for n in ("q", "k", "v"))  # (B, H|KVH, T, D)
            if style == "rope" and slot.get("rope") is not None:
                cos, sin = slot["rope"]
                apply = sys.modules[type(module).__module__].apply_rotary_pos_emb
                q, k = apply(q, k, cos, sin)
            scaling = getattr(module, "scaling", None)
            if scaling is not None and not math.isclose(scaling * math.sqrt(s.head_dim), 1.0):
                q = q * (scaling * math.sqrt(s.head_dim))
            result.append(LayerQKV(layer=index, q=q, k=k, v=v, variant=s.variant,
                                   spec=spec.with_(dtype=str(q.dtype).removeprefix("torch."))))
        return result


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, T, heads * D) -> (B, heads, T, D)."""
    b, t, _ = x.shape
    return x.view(b, t, -1, head_dim).transpose(1, 2)


def attention_modules(model: nn.Module, n_layers: int) -> list[tuple[nn.Module, str]]:
    """Each layer's self-attention module and how its q, k, v are computed, in layer order."""
    found = []
    for module in model.modules():
        if getattr(module, "is_cross_attention", False):
            continue
        if all(isinstance(getattr(module, n, None), nn.Linear) for n in ("query", "key", "value")):
            found.append((module, "bert"))
        elif hasattr(module, "c_attn") and hasattr(module, "split_size"):
            found.append((module, "gpt2"))
        elif all(isinstance(getattr(module, n, None), nn.Linear) for n in ("q_proj", "k_proj", "v_proj")):
            found.append((module, "rope"))
    if len(found) != n_layers:
        raise ValueError(f"found {len(found)} self-attention modules for {n_layers} layers: "
                         "attn captures q, k, v of BERT, GPT-2, Llama and Mistral models")
    return found


class switched_implementation:
    """Switch a model's attention implementation for one block, then switch it back."""

    def __init__(self, loaded: LoadedModel, impl: str | None) -> None:
        self.model, self.impl = loaded.model, impl
        self.before = loaded.model.config._attn_implementation

    def __enter__(self) -> None:
        if self.impl and self.impl != self.before:
            self.model.set_attn_implementation(self.impl)
            if self.model.config._attn_implementation != self.impl:  # transformers only warns
                self.__exit__()
                raise ValueError(f"{type(self.model).__name__} cannot switch its attention "
                                 f"implementation to {self.impl!r} at run time")

    def __exit__(self, *exc) -> None:
        if self.model.config._attn_implementation != self.before:
            self.model.set_attn_implementation(self.before)


# -- rollout -----------------------------------------------------------------------------------------
def rollout(attentions: np.ndarray, add_residual: bool = True) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): how much each token's final representation
    draws on each input token, following attention through every layer.

    attentions: (layers, heads, T, T) or (layers, T, T). Heads are averaged; with `add_residual`
    each layer's matrix becomes 0.5 * A + 0.5 * I (the skip connection) and rows are
    renormalised. Returns (T, T) = A_L @ ... @ A_1; rows sum to 1.
    """
    a = np.asarray(attentions, dtype=np.float64)
    if a.ndim == 4:
        a = a.mean(axis=1)
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"rollout needs (layers, heads, T, T) or (layers, T, T), got {np.shape(attentions)}")
    eye = np.eye(a.shape[-1])
    result = eye
    for layer in a:
        if add_residual:
            layer = 0.5 * layer + 0.5 * eye
        sums = layer.sum(axis=-1, keepdims=True)
        layer = np.divide(layer, sums, out=np.zeros_like(layer), where=sums > 0)
        result = layer @ result
    return result
