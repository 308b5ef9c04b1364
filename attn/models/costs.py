"""Analytic cost of a transformers model, layer by layer, from its config alone.

Conventions (the `convention` field of every result repeats the one it uses):
- FLOPs are matmul FLOPs, 2 per multiply-add. Biases, norms, softmax, activations, embeddings
  and the LM head are not counted in the per-layer numbers or their total.
- Attention core: attn's useful FLOPs, 4 * B * H * D per unmasked (query, key) pair (QK^T and
  weights @ V), with the pair counts of attn.masks: S(S+1)/2 for causal decoders, the band for
  a sliding window, S^2 for encoders. `attention_core_flops_dense` is the same without any mask
  discount.
- Projections: 2 * B * S * d * (2H + 2KVH) * D (Q, K, V, O; grouped-query sharing shrinks K, V).
- MLP: 2 * B * S * d * ff per matrix: two matrices, or three for gated MLPs (Llama, Mistral).
- Kaplan et al. (2020, Table 1): forward FLOPs per token = 2N + 2 * n_layer * n_ctx * d_attn,
  N the non-embedding parameters; no embeddings, no LM head, no causal discount, and the
  attention core is the QK^T logits alone (weights @ V is not in their table). For every model
  here d_attn = H * D = d_model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from attn.cost import attention_cost, proj_flops
from attn.models.config_facts import max_positions, model_kind
from attn.spec import AttentionSpec

# the families whose parameter layout attn knows, by transformers model_type
FAMILIES = {"bert": "bert", "gpt2": "gpt2", "llama": "llama", "mistral": "llama"}

CONVENTION = ("matmul FLOPs, 2 per multiply-add; attention core 4*B*H*D per unmasked (query, key) "
              "pair (QK^T and AV), causal and sliding-window masks discounted; projections "
              "2*B*S*d*(2H+2KVH)*D; MLP 2*B*S*d*ff per matrix (3 matrices when gated); biases, "
              "norms, softmax, activations, embeddings and the LM head not counted")
KAPLAN_CONVENTION = ("Kaplan et al. 2020, Table 1: 2N + 2*n_layer*n_ctx*d_attn per token, N = "
                     "non-embedding parameters; no embeddings, no LM head, no causal discount, "
                     "attention core = QK^T logits only")
KV_CACHE_CONVENTION = ("keys and values of every layer, 2 * layers * kv_heads * head_dim * bytes per "
                       "cached token; a sliding window keeps at most `window` tokens")


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder or encoder stack, read from a transformers config."""

    family: str  # bert | gpt2 | llama
    model_type: str
    kind: str  # encoder | decoder
    layers: int
    d_model: int
    heads: int
    kv_heads: int
    head_dim: int
    ff: int
    gated_mlp: bool
    window: int | None  # sliding window of every layer, when the model has one
    vocab_size: int
    max_positions: int | None

    def spec(self, seq_len: int, batch: int = 1, dtype: str = "float32") -> AttentionSpec:
        """The AttentionSpec of one layer's self-attention over `seq_len` tokens."""
        changes = {"window": self.window} if self.window else {}
        return AttentionSpec(batch=batch, seq=seq_len, heads=self.heads, kv_heads=self.kv_heads,
                             head_dim=self.head_dim, d_model=self.d_model, dtype=dtype,
                             causal=self.kind == "decoder", **changes)

    @property
    def variant(self) -> str:
        """The attn variant that computes this model's attention exactly."""
        return "sliding_window" if self.window else "dense"

    def to_dict(self) -> dict:
        return asdict(self)


def model_shape(config) -> ModelShape:
    """Sizes from a BERT, GPT-2, Llama or Mistral config; ValueError for other families."""
    model_type = getattr(config, "model_type", "?")
    family = FAMILIES.get(model_type)
    if family is None:
        raise ValueError(f"per-layer costs know the {', '.join(FAMILIES)} families; "
                         f"this model is {model_type!r}")
    d, heads = config.hidden_size, config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    if family == "gpt2":
        ff = config.n_inner or 4 * d
    else:
        ff = config.intermediate_size
    window = getattr(config, "sliding_window", None) if model_type == "mistral" else None
    return ModelShape(family=family, model_type=model_type, kind=model_kind(config),
                      layers=config.num_hidden_layers, d_model=d, heads=heads, kv_heads=kv_heads,
                      head_dim=head_dim, ff=ff, gated_mlp=family == "llama", window=window or None,
                      vocab_size=config.vocab_size, max_positions=max_positions(config))


# -- parameters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamCount:
    embeddings: int  # token, position and token-type tables (and BERT's embedding norm)
    per_layer: int  # every parameter of one block: weights, biases, norms
    matmul_per_layer: int  # the weights of the Q, K, V, O and MLP matrices alone
    final: int  # the final norm (decoders) or the pooler (BERT)
    layers: int

    @property
    def total(self) -> int:
        return self.embeddings + self.layers * self.per_layer + self.final

    @property
    def non_embedding(self) -> int:
        return self.total - self.embeddings


def param_count(config) -> ParamCount:
    """Parameters of the base model transformers builds (AutoModel: no LM head), from the config."""
    s = model_shape(config)
    d, hd, h, kvh, ff = s.d_model, s.head_dim, s.heads, s.kv_heads, s.ff
    attn_weights = d * hd * (2 * h + 2 * kvh)
    mlp_weights = (3 if s.gated_mlp else 2) * d * ff
    matmul = attn_weights + mlp_weights
    if s.family == "bert":
        biases = 3 * h * hd + d + ff + d  # Q, K, V, O, intermediate, output
        norms = 2 * 2 * d
        embeddings = (s.vocab_size + config.max_position_embeddings + config.type_vocab_size) * d + 2 * d
        final = d * d + d  # pooler
    elif s.family == "gpt2":
        biases = 3 * d + d + ff + d  # c_attn, c_proj, c_fc, mlp c_proj
        norms = 2 * 2 * d
        embeddings = (s.vocab_size + config.n_positions) * d
        final = 2 * d  # ln_f
    else:
        attention_bias = getattr(config, "attention_bias", False)
        mlp_bias = getattr(config, "mlp_bias", False)
        biases = (h * hd + 2 * kvh * hd + d) * attention_bias + (2 * ff + d) * mlp_bias
        norms = 2 * d  # two RMSNorm weights
        embeddings = s.vocab_size * d
        final = d
    return ParamCount(embeddings=embeddings, per_layer=matmul + biases + norms,
                      matmul_per_layer=matmul, final=final, layers=s.layers)


# -- FLOPs per layer -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerCost:
    layer: int
    seq_len: int
    batch: int
    variant: str  # the attn variant of this layer's attention: dense or sliding_window
    causal: bool
    window: int | None
    pairs: int  # unmasked (query, key) pairs per batch item and head
    attention_core_flops: int
    attention_core_flops_dense: int  # no mask discount: S*S pairs
    qkv_flops: int
    o_flops: int
    projection_flops: int  # qkv + o
    mlp_flops: int
    total_flops: int  # attention core + projections + MLP
    params: int  # every parameter of the layer
    matmul_params: int
    convention: str = CONVENTION

    @property
    def attention_share(self) -> float:
        """Fraction of the layer's FLOPs in the attention core."""
        return self.attention_core_flops / self.total_flops

    def to_dict(self) -> dict:
        return {**asdict(self), "attention_share": self.attention_share}


def layer_costs(config, seq_len: int, batch: int = 1) -> list[LayerCost]:
    """One LayerCost per layer for a forward pass over `seq_len` tokens (all layers are alike)."""
    s = model_shape(config)
    spec = s.spec(seq_len, batch)
    cost = attention_cost(spec, s.variant)
    dense = attention_cost(spec.with_(causal=False), "dense")
    params = param_count(config)
    proj = proj_flops(spec)
    qkv = 2 * batch * seq_len * s.d_model * (s.heads + 2 * s.kv_heads) * s.head_dim
    mlp = 2 * batch * seq_len * s.d_model * s.ff * (3 if s.gated_mlp else 2)
    return [LayerCost(layer=i, seq_len=seq_len, batch=batch, variant=s.variant, causal=spec.causal,
                      window=s.window, pairs=cost.pairs, attention_core_flops=cost.flops,
                      attention_core_flops_dense=dense.flops, qkv_flops=qkv, o_flops=proj - qkv,
                      projection_flops=proj, mlp_flops=mlp, total_flops=cost.flops + proj + mlp,
                      params=params.per_layer, matmul_params=params.matmul_per_layer)
            for i in range(s.layers)]


@dataclass(frozen=True)
class ModelFlops:
    seq_len: int
    batch: int
    layers: int
    attention_core_flops: int
    projection_flops: int
    mlp_flops: int
    total_flops: int  # the sum over layers; embeddings and LM head excluded
    lm_head_flops: int  # 2*B*S*d*vocab, for reference only (not in total_flops)
    convention: str = CONVENTION

    @property
    def flops_per_token(self) -> float:
        return self.total_flops / (self.batch * self.seq_len)

    def to_dict(self) -> dict:
        return {**asdict(self), "flops_per_token": self.flops_per_token}


def model_flops(config, seq_len: int, batch: int = 1) -> ModelFlops:
    """Whole-model forward FLOPs, counted at once rather than layer by layer.

    Projections and MLP are 2 FLOPs per matmul weight per token; the attention core is one
    attention call with every layer's heads side by side. `layer_costs` must add up to this.
    """
    s = model_shape(config)
    tokens = batch * seq_len
    params = param_count(config)
    stacked = s.spec(seq_len, batch).with_(heads=s.heads * s.layers, kv_heads=s.kv_heads * s.layers)
    core = attention_cost(stacked, s.variant).flops
    mlp = s.layers * 2 * tokens * (3 if s.gated_mlp else 2) * s.d_model * s.ff
    proj = 2 * tokens * s.layers * params.matmul_per_layer - mlp
    lm_head = 2 * tokens * s.d_model * s.vocab_size if s.kind == "decoder" else 0
    return ModelFlops(seq_len=seq_len, batch=batch, layers=s.layers, attention_core_flops=core,
                      projection_flops=proj, mlp_flops=mlp, total_flops=core + proj + mlp,
                      lm_head_flops=lm_head)


def kaplan_flops_per_token(config, n_ctx: int) -> int:
    """Kaplan et al. (2020, Table 1): 2N + 2 * n_layer * n_ctx * d_attn, N non-embedding params."""
    s = model_shape(config)
    return 2 * param_count(config).non_embedding + 2 * s.layers * n_ctx * s.heads * s.head_dim


def kaplan_convention_flops_per_token(config, n_ctx: int) -> float:
    """attn's per-layer numbers recounted with Kaplan's conventions: projections and MLP as they
    are, the attention core without any mask discount and without weights @ V (half the dense
    useful FLOPs), embeddings and LM head left out."""
    total = sum(c.projection_flops + c.mlp_flops + c.attention_core_flops_dense / 2
                for c in layer_costs(config, n_ctx))
    return total / n_ctx


# -- KV cache ----------------------------------------------------------------------------------------
def kv_cache_curve(config, contexts: list[int], dtype_bytes: int = 2) -> list[dict]:
    """KV-cache bytes for decoding at each context length, and what they would be without the
    model's grouped-query sharing (MHA), with a single key/value head (MQA), and without its
    sliding window. Encoders keep no cache; their rows say so with zeros."""
    s = model_shape(config)
    per_token_head = 2 * s.layers * s.head_dim * dtype_bytes  # keys and values, every layer
    rows = []
    for context in contexts:
        if context < 0:
            raise ValueError(f"context lengths must be >= 0, got {context}")
        cached = min(context, s.window) if s.window else context
        decoder = s.kind == "decoder"
        rows.append({
            "context": context,
            "cached_tokens": cached if decoder else 0,
            "kv_heads": s.kv_heads,
            "window": s.window,
            "bytes": per_token_head * s.kv_heads * cached * decoder,
            "bytes_mha": per_token_head * s.heads * context * decoder,
            "bytes_mqa": per_token_head * 1 * cached * decoder,
            "bytes_without_window": per_token_head * s.kv_heads * context * decoder,
            "dtype_bytes": dtype_bytes,
            "convention": KV_CACHE_CONVENTION,
        })
    return rows
