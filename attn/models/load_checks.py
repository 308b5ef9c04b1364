"""What attn checks before it loads a model directory: the values in its config.json, and that its
weights fit in the memory that is free. A config.json is a file a user was given; a hostile one
(hidden_size 10**12, num_hidden_layers 10**9, NaN, a string where a count goes) would have
transformers allocate terabytes or build layers for hours. Each check refuses in one line that
names the file's key, its value and what is allowed: the file's values before transformers reads
it, the shape transformers resolves (a family's defaults and own names) before it builds the
model, and the weights' bytes before any is allocated.

transformers is imported only when a check asks it whether it knows a model_type.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from attn import memory
from attn.models.costs import param_count
from attn.readable import nbytes

# a config.json is a few KB; the largest hold a label table (ImageNet-21k's 21,843 labels: ~1 MB).
# Past this the file is read no further.
MAX_CONFIG_BYTES = 16 * 2**20
# the largest tokenizers released are tens of MB (Gemma 3's tokenizer.json: 33 MB; multilingual
# vocabularies of 250k pieces ~20 MB): a model's own past this is not read, MiniLM's serves instead
MAX_TOKENIZER_BYTES = 256 * 2**20
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "tokenizer.model", "spiece.model", "special_tokens_map.json", "added_tokens.json")
MAX_DEPTH = 32  # nested objects (text_config inside a vision-language config is depth 2)
# no count in a model comes near 2**53, the largest whole number JSON readers keep exactly
MAX_ANY_INT = 2**53

# The sizes attn and transformers read, under each family's own name. The largest released models
# are 16,384 wide with 128 heads, 126 layers and a 53,248-wide MLP (Llama 3.1 405B), a
# 262,144-token vocabulary (Gemma 3) and 10,485,760 positions (Llama 4 Scout); each limit leaves a
# factor of 8 or more above them, so only a value no model has is refused here (a model within
# them that does not fit is the memory check's to refuse).
_WIDTH, _HEADS, _LAYERS, _FF, _VOCAB, _POSITIONS = 2**17, 2**12, 2**10, 2**20, 2**24, 2**27
SIZE_LIMITS: dict[str, tuple[int, int]] = {  # key: (lowest, highest)
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "embedding_size"), (1, _WIDTH)),
    **dict.fromkeys(("num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads",
                     "decoder_attention_heads", "num_key_value_heads", "num_kv_heads", "n_kv_heads"),
                    (1, _HEADS)),
    **dict.fromkeys(("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers",
                     "decoder_layers", "num_decoder_layers"), (1, _LAYERS)),
    **dict.fromkeys(("head_dim", "d_kv", "kv_channels"), (1, _HEADS)),
    **dict.fromkeys(("intermediate_size", "n_inner", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim",
                     "d_ff", "ffn_hidden_size"), (1, _FF)),
    **dict.fromkeys(("vocab_size", "n_vocab", "padded_vocab_size"), (1, _VOCAB)),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"),
                    (1, _POSITIONS)),
    "type_vocab_size": (0, 1024),  # 0: no token types (DeBERTa-v2 has none)
    "sliding_window": (0, _POSITIONS),
    **dict.fromkeys(("num_local_experts", "num_experts", "n_routed_experts"), (0, _HEADS)),  # 0: dense
}
# transformers' common names, which every page and command reads (a family's own names reach
# them through its config's attribute_map): the shape of the checks after transformers has read it
SHAPE_NAMES = ("hidden_size", "num_attention_heads", "num_hidden_layers")
FLOAT_DTYPES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
SAFETENSORS_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}


class ModelLoadError(ValueError):
    """A model could not be loaded; the message says why and what to do."""


class BadModelConfig(ModelLoadError):
    """A config.json value no model has; the message names the key, the value and what is allowed."""


class ModelDoesNotFit(ModelLoadError):
    """The model's weights need more memory than is free."""


def _shown(value: Any) -> str:
    """The value as config.json spells it (NaN, true, "64"), cut to 40 characters."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def config_json(directory: Path) -> dict[str, Any]:
    """config.json of `directory` as a dict whose every value attn can hand to transformers.
    BadModelConfig, in one line, for a file that is too large, not JSON, not an object, without a
    model_type transformers knows, or holding a value no model has."""
    path = directory / "config.json"
    where = f"config.json in {directory}"
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise BadModelConfig(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise BadModelConfig(f"{where} is larger than {MAX_CONFIG_BYTES // 2**20} MiB, far past any "
                             "model's config: name the directory of a model")
    try:
        raw = json.loads(text)
    except RecursionError:
        raise BadModelConfig(f"{where} nests deeper than {MAX_DEPTH} levels: no model's config does") from None
    except ValueError as exc:  # JSONDecodeError, bytes that are not UTF-8, a number of 4,300+ digits
        raise BadModelConfig(f"{where} is not valid JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise BadModelConfig(f"{where} does not hold a JSON object")
    model_type = raw.get("model_type")
    if model_type is None:
        raise BadModelConfig(f"{where} has no model_type: name the model's family as transformers "
                             "writes it (bert, gpt2, llama, mistral, ...)")
    _check_values(raw, where, "", 1)
    _check_model_type(model_type, where)
    return raw


def _check_values(value: Any, where: str, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadModelConfig(f"{where} nests deeper than {MAX_DEPTH} levels at {path}: no model's config does")
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else key
            if key in SIZE_LIMITS and item is not None:  # null: the family's default
                _check_size(key, name, item, where)
            _check_values(item, where, name, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, where, f"{path}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadModelConfig(f"{where}: {path} is {_shown(value)}; allowed: a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ANY_INT:
        raise BadModelConfig(f"{where}: {path} is {_shown(value)}; allowed: a whole number within "
                             f"2**53 of zero (no number in a model's config comes near)")


def _check_size(key: str, name: str, value: Any, where: str) -> None:
    lo, hi = SIZE_LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadModelConfig(f"{where}: {name} is {_shown(value)}; allowed: a whole number from "
                             f"{lo} to {hi:,}")


def _check_model_type(model_type: Any, where: str) -> None:
    from transformers import CONFIG_MAPPING  # lazy: a mapping of names, no model code

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        import transformers

        raise BadModelConfig(f"{where}: model_type is {_shown(model_type)}, not a family transformers "
                             f"{transformers.__version__} knows; name one as transformers writes it "
                             "(bert, gpt2, llama, mistral, ...)")


def check_shape(config: Any, raw: dict[str, Any], directory: Path) -> None:
    """The checks that need transformers' reading of the file (a family's defaults and its own
    names): the shape attn reads is there, within the limits, and the heads divide evenly."""
    where = f"config.json in {directory}"
    names = getattr(config, "attribute_map", {})

    def key(name: str) -> str:  # the name the file uses: n_embd for GPT-2's hidden_size
        return names.get(name, name)

    for name in SHAPE_NAMES:
        value = getattr(config, name, None)
        if value is None:
            raise BadModelConfig(f"{where} gives no {key(name)}: attn reads a model's "
                                 f"{', '.join(SHAPE_NAMES)} (or its family's names for them)")
        _check_size(name, key(name), value, where)
    for name in ("num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "max_position_embeddings"):
        value = getattr(config, name, None)
        if value is not None:
            _check_size(name, key(name), value, where)
    hidden, heads = config.hidden_size, config.num_attention_heads
    if raw.get("head_dim") is None and hidden % heads:
        raise BadModelConfig(f"{where}: {key('hidden_size')} {hidden} is not a multiple of "
                             f"{key('num_attention_heads')} {heads}; allowed: a width that the heads "
                             "divide evenly (or a head_dim of its own)")
    if config.model_type == "bert" and getattr(config, "type_vocab_size", 1) < 1:
        # BERT adds token type 0's embedding to every token: a table of none fails the first text
        raise BadModelConfig(f"{where}: type_vocab_size is 0; allowed for BERT: a whole number from 1 to 1,024")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if heads % kv_heads:
        raise BadModelConfig(f"{where}: num_key_value_heads {kv_heads} does not divide "
                             f"{key('num_attention_heads')} {heads}; allowed: a divisor of {heads}")


# -- memory ---------------------------------------------------------------------------------------
def tokenizer_bytes(directory: Path) -> int:
    """The bytes of the tokenizer files transformers would read from `directory` (their sizes on
    disk, nothing read)."""
    total = 0
    for name in TOKENIZER_FILES:
        try:
            total += (directory / name).stat().st_size
        except OSError:  # absent, or unreadable: transformers will say so, or the borrowed one serves
            pass
    return total


def config_parameters(config: Any) -> int:
    """Parameters of the base model the config describes: attn's exact count for the families
    it knows, else the embeddings and every layer's attention and MLP matrices (3 of them, as a
    gated MLP has, times the experts of a mixture), which every transformer has at least."""
    try:
        return param_count(config).total
    except ValueError:  # a family the cost tables do not know
        pass
    d, heads, layers = config.hidden_size, config.num_attention_heads, config.num_hidden_layers
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    ff = getattr(config, "intermediate_size", None) or 4 * d
    experts = max(getattr(config, n, None) or 1 for n in ("num_local_experts", "num_experts", "n_routed_experts"))
    vocab = getattr(config, "vocab_size", None) or 0
    positions = getattr(config, "max_position_embeddings", None) or 0
    per_layer = d * head_dim * (2 * heads + 2 * kv_heads) + 3 * d * ff * experts
    return (vocab + positions) * d + layers * per_layer


def weight_files(directory: Path) -> tuple[int, int]:
    """(parameters in the *.safetensors files, the largest float element size among them, 0 when
    none), from their headers alone. ModelLoadError for a file that is not safetensors."""
    from safetensors import safe_open

    count = width = 0
    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    piece = handle.get_slice(name)
                    count += math.prod(piece.get_shape())
                    width = max(width, SAFETENSORS_BYTES.get(piece.get_dtype(), 0))
        except Exception as exc:  # safetensors raises its own error types, and OSError
            raise ModelLoadError(f"{path.name} in {directory} is not a readable safetensors file "
                                 f"(corrupt or truncated?): {' '.join(str(exc).split())}") from None
    return count, width


def weight_bytes(config: Any, raw: dict[str, Any], files: tuple[int, int]) -> tuple[int, int, int]:
    """(bytes the loaded weights take, parameters, bytes a parameter). transformers builds every
    parameter the config describes and fills those the files hold; it keeps them in the config's
    dtype when it names one, else in the files' own. The larger count of the two is the bound."""
    params = max(config_parameters(config), files[0])
    named = raw.get("dtype") or raw.get("torch_dtype")
    width = FLOAT_DTYPES.get(named) if isinstance(named, str) else None
    width = width or files[1] or 4
    return params * width, params, width


def check_weights_fit(name: str, config: Any, raw: dict[str, Any], files: tuple[int, int],
                      devices: tuple[str, ...]) -> None:
    """ModelDoesNotFit, in one line, when the weights need more than is free on any of `devices`
    (the CPU they are loaded on, then the device they move to). The free memory is read through
    attn.memory, the seam the capture's check uses too."""
    need, params, width = weight_bytes(config, raw, files)
    for device in devices:
        free = memory.free_bytes(device)
        if need > free:
            raise ModelDoesNotFit(f"does not fit: {name}'s weights need ~{nbytes(need)} ({params:,} parameters "
                                  f"at {width} bytes, from config.json and the *.safetensors headers), "
                                  f"{nbytes(free)} free on {device}; choose a smaller model or free memory")
