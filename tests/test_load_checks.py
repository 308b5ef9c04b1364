"""A model directory's config.json with hostile values: refused in one line that names the key, the
value and what is allowed, before transformers builds or allocates anything; and weights that
cannot fit in free memory refused the same way. Through the library and every command that loads
a model directory. The directories are built here (tiny, random weights): nothing is downloaded."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from attn import memory
from attn.models import ModelLoadError, load_model, model_config, param_count
from attn.models import load_checks
from attn.models.load_checks import BadModelConfig, ModelDoesNotFit, weight_bytes, weight_files
from tests import fuzz_inputs as F

BERT = {"model_type": "bert", "hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
        "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64, "type_vocab_size": 2}
LLAMA = {"model_type": "llama", "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
         "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_head": 2, "n_layer": 1, "vocab_size": 100, "n_positions": 64}
QUICK_S = 5.0  # a refusal reads one small file: far under this even on a busy 2-core machine


def model_dir(path: Path, config: dict, weights: bool = True) -> Path:
    """A directory as a user would name it: `config` as config.json (written as given, so it may
    hold anything) and a safetensors file. With `weights`, the weights of the first family the
    config names, saved by transformers; else a valid file with no tensors in it."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    if weights:
        from transformers import AutoConfig, AutoModel

        AutoModel.from_config(AutoConfig.for_model(**config)).save_pretrained(path)
    else:
        save_file({}, path / "model.safetensors")
    text = config if isinstance(config, (str, bytes)) else json.dumps(config)
    (path / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def refused(source: str, error=BadModelConfig) -> str:
    start = time.perf_counter()
    with pytest.raises(error) as caught:
        load_model(source)
    assert time.perf_counter() - start < QUICK_S
    message = str(caught.value)
    assert F.one_line(caught.value) and isinstance(caught.value, ValueError), message
    return message


HOSTILE = [  # (family, key, value, what the line says)
    (BERT, "hidden_size", 10**12, "hidden_size is 1000000000000; allowed: a whole number from 1 to 131,072"),
    (BERT, "num_hidden_layers", 10**9, "num_hidden_layers is 1000000000; allowed: a whole number from 1 to 1,024"),
    (BERT, "vocab_size", 10**15, "vocab_size is 1000000000000000; allowed: a whole number from 1 to 16,777,216"),
    (BERT, "num_hidden_layers", 0, "num_hidden_layers is 0; allowed"),
    (BERT, "num_attention_heads", -4, "num_attention_heads is -4; allowed"),
    (BERT, "hidden_size", True, "hidden_size is true; allowed: a whole number"),
    (BERT, "hidden_size", 32.0, "hidden_size is 32.0; allowed: a whole number"),
    (BERT, "hidden_size", "32", 'hidden_size is "32"; allowed: a whole number'),
    (BERT, "intermediate_size", [64], "intermediate_size is [64]; allowed"),
    (BERT, "max_position_embeddings", 10**9, "max_position_embeddings is 1000000000; allowed: a whole number "
                                              "from 1 to 134,217,728"),
    (BERT, "max_position_embeddings", float("nan"), "max_position_embeddings is NaN; allowed: a whole number"),
    (BERT, "layer_norm_eps", float("nan"), "layer_norm_eps is NaN; allowed: a finite number"),
    (BERT, "initializer_range", float("-inf"), "initializer_range is -Infinity; allowed: a finite number"),
    (BERT, "pad_token_id", 10**30, "pad_token_id is 1000000000000000000000000000000; allowed: a whole number within 2**53"),
    (BERT, "hidden_size", 33, "hidden_size 33 is not a multiple of num_attention_heads 2"),
    (BERT, "type_vocab_size", 0, "type_vocab_size is 0; allowed for BERT: a whole number from 1"),
    (LLAMA, "num_key_value_heads", 3, "num_key_value_heads 3 does not divide num_attention_heads 4"),
    (LLAMA, "head_dim", 10**6, "head_dim is 1000000; allowed: a whole number from 1 to 4,096"),
    (GPT2, "n_embd", 10**12, "n_embd is 1000000000000; allowed"),
    (GPT2, "n_embd", 33, "n_embd 33 is not a multiple of n_head 2"),
    (GPT2, "n_layer", 10**9, "n_layer is 1000000000; allowed"),
    (LLAMA, "text_config", {"hidden_size": 10**12}, "text_config.hidden_size is 1000000000000; allowed"),
    (BERT, "model_type", "no-such-family", 'model_type is "no-such-family", not a family transformers'),
    (BERT, "model_type", 7, "model_type is 7, not a family transformers"),
]


@pytest.mark.parametrize("family, key, value, says", HOSTILE, ids=[f"{k}={v!r:.20}" for _, k, v, _ in HOSTILE])
def test_a_hostile_value_is_one_line_naming_the_key_and_what_is_allowed(tmp_path, family, key, value, says):
    directory = model_dir(tmp_path / "m", {**family, key: value}, weights=False)
    message = refused(str(directory))
    assert says in message and str(directory) in message, message
    with pytest.raises(BadModelConfig, match="allowed|not a family"):  # the costs read the same checks
        model_config(str(directory))


@pytest.mark.parametrize("text, says", [
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe\x00", "is not valid JSON"),
    (b"[1, 2]", "does not hold a JSON object"),
    (b'"bert"', "does not hold a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than"),
    (json.dumps({**BERT, "x": {"y": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}).encode(),
     "nests deeper than 32 levels at x.y"),
    (json.dumps({k: v for k, v in BERT.items() if k != "model_type"}).encode(), "has no model_type"),
    (json.dumps({"model_type": "mamba", "hidden_size": 32, "num_hidden_layers": 1}).encode(),
     "gives no num_attention_heads: attn reads"),  # no attention: nothing attn can show
    (json.dumps({"model_type": "clip"}).encode(), "gives no hidden_size"),
    (b'{"model_type": "bert", "hidden_size": 1' + b"0" * 5000 + b"}", "is not valid JSON"),
])
def test_a_config_that_is_not_a_models_is_one_line(tmp_path, text, says):
    directory = model_dir(tmp_path / "m", text, weights=False)
    assert says in refused(str(directory))


def test_a_config_past_its_size_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(load_checks, "MAX_CONFIG_BYTES", 1024)
    directory = model_dir(tmp_path / "m", {**BERT, "id2label": {str(i): f"label {i}" for i in range(200)}},
                          weights=False)
    assert "is larger than" in refused(str(directory))


@pytest.mark.parametrize("bound, text", [
    (None, b'{"tokenizer_class": "BertTokenizer"}'),  # within bounds: the model's own tokenizer
    (1024, b'{"tokenizer_class": "BertTokenizer", "x": "' + b"y" * 2000 + b'"}'),
    (None, b"[" * 100_000),
])
def test_a_tokenizer_config_past_any_size_or_depth_borrows_minilms(tmp_path, monkeypatch, bound, text):
    if bound is not None:
        monkeypatch.setattr(load_checks, "MAX_CONFIG_BYTES", bound)
    directory = model_dir(tmp_path / "m", BERT)
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "few"]))
    (directory / "tokenizer_config.json").write_bytes(text)
    own = bound is None and text.startswith(b"{")
    assert load_model(str(directory)).tokenizer_note.startswith("the model's own" if own else "MiniLM's")


def test_tokenizer_files_past_their_bound_are_not_read(tmp_path, monkeypatch):
    import transformers

    directory = model_dir(tmp_path / "m", BERT)
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "few"]))
    with (directory / "tokenizer.json").open("wb") as handle:  # 300 MiB, sparse: nothing written
        handle.truncate(300 * 2**20)
    real = transformers.AutoTokenizer.from_pretrained

    def only_minilms(path, *args, **kwargs):
        assert Path(path) != directory, "the oversized tokenizer was handed to transformers"
        return real(path, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", only_minilms)
    loaded = load_model(str(directory))
    assert loaded.tokenizer_note.startswith("MiniLM's")
    assert "the model's own tokenizer files are 300 MiB, past the 256 MiB attn reads" in loaded.tokenizer_note
    assert loaded.vocab_mod == BERT["vocab_size"]


# -- memory ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [BERT, LLAMA, GPT2], ids=["bert", "llama", "gpt2"])
def test_the_weights_estimate_is_what_transformers_builds(tmp_path, config):
    directory = model_dir(tmp_path / "m", config)
    loaded = load_model(str(directory))
    need, params, width = weight_bytes(loaded.config, config, weight_files(directory))
    assert params == loaded.num_parameters == param_count(loaded.config).total
    assert need == sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    assert width == 4


def test_a_family_without_a_cost_table_is_estimated_from_its_matrices(tmp_path):
    config = {"model_type": "qwen2", "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
              "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}
    directory = model_dir(tmp_path / "m", config)
    loaded = load_model(str(directory))
    _, params, _ = weight_bytes(loaded.config, config, weight_files(directory))
    # embeddings, every attention and MLP matrix; norms and biases are small beside them
    assert loaded.num_parameters * 0.9 <= params <= loaded.num_parameters * 1.5


def test_the_files_count_when_they_hold_more_than_the_config(tmp_path):
    directory = model_dir(tmp_path / "m", BERT)
    from safetensors.torch import save_file
    import torch

    save_file({"extra": torch.zeros(1000, 1000, dtype=torch.float16)}, directory / "extra.safetensors")
    count, width = weight_files(directory)
    assert count > 10**6 and width == 4  # the model's own file is float32
    _, params, _ = weight_bytes(model_config(str(directory)), BERT, (count, width))
    assert params == count


def test_the_config_dtype_sets_the_bytes_of_a_parameter(tmp_path):
    directory = model_dir(tmp_path / "m", BERT)
    config, files = model_config(str(directory)), weight_files(directory)
    assert weight_bytes(config, {**BERT, "dtype": "bfloat16"}, files)[2] == 2
    assert weight_bytes(config, {**BERT, "torch_dtype": "float64"}, files)[2] == 8
    assert weight_bytes(config, {**BERT, "dtype": "int4-ish"}, files)[2] == 4  # the files' own


def test_weights_that_cannot_fit_are_refused_before_transformers_builds_them(tmp_path, monkeypatch):
    # a width every check allows, but 4 layers of it do not fit in the (pretended) free memory
    config = {**BERT, "hidden_size": 2**16, "num_attention_heads": 2**9, "intermediate_size": 2**18,
              "num_hidden_layers": 4}
    directory = model_dir(tmp_path / "m", config, weights=False)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 8 * 2**30)
    message = refused(str(directory), ModelDoesNotFit)
    assert message.startswith("does not fit: m's weights need ~") and "8 GiB free on cpu" in message
    assert isinstance(ModelDoesNotFit("x"), ModelLoadError)


def test_the_device_the_model_moves_to_is_checked_too(tmp_path, monkeypatch):
    directory = model_dir(tmp_path / "m", BERT)
    config, files = model_config(str(directory)), weight_files(directory)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**40 if device == "cpu" else 1024)
    load_checks.check_weights_fit("m", config, BERT, files, ("cpu",))
    with pytest.raises(ModelDoesNotFit, match="1 KiB free on cuda:0"):
        load_checks.check_weights_fit("m", config, BERT, files, ("cpu", "cuda:0"))


def test_a_sane_directory_still_loads_and_runs(tmp_path):
    from attn.models import capture_attention

    loaded = load_model(str(model_dir(tmp_path / "m", LLAMA)))
    assert capture_attention(loaded, "a few words").attentions.shape[:2] == (2, 4)


# -- every command that loads a model directory -------------------------------------------------------
COMMANDS = [
    ["model", "--model", "{dir}", "--text", "a few words", "--json"],
    ["plan", "--model", "{dir}", "--layers", "0:sdpa", "--json"],
    ["profile", "--variant", "dense", "--text", "a few words", "--inputs-model", "{dir}", "--json"],
    ["maps", "--variant", "dense", "--text", "a few words", "--inputs-model", "{dir}", "--json"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=[c[0] for c in COMMANDS])
@pytest.mark.parametrize("key, value", [("num_hidden_layers", 10**9), ("hidden_size", float("nan"))])
def test_every_command_refuses_a_hostile_config_in_one_line(tmp_path, argv, key, value):
    directory = model_dir(tmp_path / "m", {**BERT, key: value}, weights=False)
    outcome = F.call_cli([a.replace("{dir}", str(directory)) for a in argv], limit_s=60)
    assert outcome.kind == "error", outcome.detail  # exit 2 and one line on stderr
    assert f"{key} is" in outcome.detail and "allowed" in outcome.detail, outcome.detail
    assert outcome.seconds < QUICK_S, outcome.seconds


def test_a_command_refuses_weights_that_cannot_fit(tmp_path, monkeypatch):
    directory = model_dir(tmp_path / "m", {**BERT, "hidden_size": 2**14, "num_attention_heads": 2**7,
                                           "intermediate_size": 2**16, "num_hidden_layers": 64}, weights=False)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**30)
    outcome = F.call_cli(["model", "--model", str(directory), "--text", "words", "--json"], limit_s=60)
    assert outcome.kind == "error" and "does not fit: m's weights need" in outcome.detail, outcome.detail


def test_a_family_with_no_token_types_still_loads(tmp_path):
    # DeBERTa-v2 and v3 ship type_vocab_size 0: a value of a real model is never refused
    config = {"model_type": "deberta-v2", "hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
              "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64, "type_vocab_size": 0}
    assert load_model(str(model_dir(tmp_path / "m", config))).num_parameters > 0
