"""attn.models: real models without network, their attention, their cost layer by layer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attn import variants
from attn.models import (ModelLoadError, PRESETS, capture_attention, capture_qkv, captured_qkv,
                         compare_implementations, kaplan_convention_flops_per_token,
                         kaplan_flops_per_token, kv_cache_curve, layer_costs, load_model,
                         model_config, model_flops, model_json, model_shape, param_count,
                         preset_config, rollout, time_modules)

SENTENCE = "The cat sat on the mat because it was warm."
LONG_TEXT = "Attention lets every token look at every other token, and that costs. " * 12


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


@pytest.fixture(scope="module")
def llama_gqa():
    return load_model("llama-gqa")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return str(tiny_gpt2_dir(tmp_path_factory.mktemp("models") / "tiny-gpt2"))


def tiny_gpt2_dir(path):
    """A GPT-2 with random weights saved as a user's local directory (safetensors, no tokenizer)."""
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    GPT2Model(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=256)
              ).save_pretrained(path)
    return path


# -- capture: hooked q/k give the same maps as transformers' own output_attentions ------------
def test_minilm_maps_from_hooked_qk_equal_output_attentions(minilm):
    cap = capture_attention(minilm, SENTENCE)
    assert cap.tokens[0] == "[CLS]" and cap.tokens[-1] == "[SEP]" and "cat" in cap.tokens
    assert cap.attentions.shape == (6, 12, len(cap.tokens), len(cap.tokens))
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, atol=1e-5)

    qkv = capture_qkv(minilm, SENTENCE)
    for layer in qkv.layers:
        assert layer.q.shape == (1, 12, len(cap.tokens), 32)
        assert layer.spec.causal is False and layer.variant == "dense"
        # softmax(q k^T / sqrt(d)) per head, through attn's own dense variant
        np.testing.assert_allclose(layer.weights()[0].numpy(), cap.attentions[layer.layer], atol=1e-5)


def test_capture_attention_can_also_return_q_and_k(minilm):
    cap = capture_attention(minilm, SENTENCE, with_qk=True)
    assert len(cap.q) == len(cap.k) == 6
    q, k = cap.q[2], cap.k[2]  # (heads, T, D)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(weights / weights.sum(-1, keepdims=True), cap.attentions[2], atol=1e-5)


def test_rotary_decoder_capture_applies_rope_and_matches_output_attentions(llama_gqa):
    cap = capture_attention(llama_gqa, SENTENCE)
    qkv = capture_qkv(llama_gqa, SENTENCE)
    t = len(cap.tokens)
    for layer in qkv.layers:
        assert layer.q.shape == (1, 8, t, 64) and layer.k.shape == (1, 2, t, 64)
        assert layer.spec.causal and layer.spec.kv_heads == 2
        np.testing.assert_allclose(layer.weights()[0].numpy(), cap.attentions[layer.layer], atol=1e-5)


def test_projections_alone_are_not_what_a_rotary_model_attends_with(llama_gqa):
    """Why capture rotates: q_proj/k_proj outputs without RoPE give visibly different maps."""
    attention = llama_gqa.model.layers[0].self_attn
    raw = {}
    hooks = [getattr(attention, name).register_forward_hook(
        lambda _m, _i, out, name=name: raw.__setitem__(name, out)) for name in ("q_proj", "k_proj")]
    try:
        cap = capture_attention(llama_gqa, SENTENCE)
    finally:
        for hook in hooks:
            hook.remove()
    t = len(cap.tokens)
    q = raw["q_proj"].view(1, t, 8, 64).transpose(1, 2)
    k = raw["k_proj"].view(1, t, 2, 64).transpose(1, 2)
    spec = model_shape(llama_gqa.config).spec(t)
    unrotated = variants.get("dense").weights(q, k, spec, None)[0].numpy()
    assert np.abs(unrotated - cap.attentions[0]).max() > 1e-3


def test_sliding_window_decoder_maps_match_past_the_window():
    loaded = load_model("mistral-swa")
    cap = capture_attention(loaded, LONG_TEXT, max_tokens=160)
    assert cap.seq_len == 160 > loaded.config.sliding_window == 128
    assert (cap.attentions[0, 0, -1] > 0).sum() == 128  # the last query sees 128 keys
    layer = capture_qkv(loaded, LONG_TEXT, max_tokens=160, layers=[1]).layers[0]
    assert layer.variant == "sliding_window" and layer.spec.window == 128
    np.testing.assert_allclose(layer.weights()[0].numpy(), cap.attentions[1], atol=1e-5)


def test_local_directory_gpt2_loads_and_its_fused_qkv_is_split_right(tiny_gpt2):
    loaded = load_model(tiny_gpt2)
    assert loaded.kind == "decoder" and loaded.vocab_mod == 1000  # borrowed tokenizer
    assert loaded.num_parameters == param_count(loaded.config).total
    cap = capture_attention(loaded, SENTENCE)
    qkv = capture_qkv(loaded, SENTENCE)  # runs under sdpa: no T x T matrix in any layer
    assert loaded.model.config._attn_implementation == "eager"  # switched back
    for layer in qkv.layers:
        np.testing.assert_allclose(layer.weights()[0].numpy(), cap.attentions[layer.layer], atol=1e-5)


def test_captured_qkv_feeds_the_variants_real_inputs():
    q, k, v, spec = captured_qkv(LONG_TEXT, layer=3)
    assert spec.heads == 12 and spec.head_dim == 32 and not spec.causal
    assert q.shape == (1, 12, spec.seq, 32) and v.shape == k.shape == q.shape
    full = variants.get("dense").run(q, k, v, spec)
    approx = variants.get("topk").run(q, k, v, spec.with_(top_k=8))
    approx_error = float((approx - full).norm() / full.norm())
    assert 0 < approx_error < 1


def test_capture_rejects_bad_requests(minilm):
    with pytest.raises(ValueError, match="empty"):
        capture_attention(minilm, "   ")
    with pytest.raises(ValueError, match="layers 0..5"):
        capture_qkv(minilm, SENTENCE, layers=[6])
    assert capture_attention(minilm, LONG_TEXT, max_tokens=16).tokens[-1] == "[SEP]"


# -- rollout ------------------------------------------------------------------------------------------
def test_rollout_on_hand_made_matrices():
    eye = np.eye(3)[None, None]
    np.testing.assert_allclose(rollout(np.repeat(eye, 4, axis=0)), np.eye(3))

    to_first = np.zeros((3, 3))
    to_first[:, 0] = 1.0  # every token attends to token 0
    np.testing.assert_allclose(rollout(to_first[None], add_residual=False), to_first)
    # with the residual: 0.5 * A + 0.5 * I
    np.testing.assert_allclose(rollout(to_first[None]), 0.5 * to_first + 0.5 * np.eye(3))

    shift = np.roll(np.eye(3), 1, axis=1)  # token i attends to token i+1 (mod 3)
    two_layers = np.stack([shift, shift])[:, None]  # (layers, heads, T, T)
    np.testing.assert_allclose(rollout(two_layers, add_residual=False), shift @ shift)

    heads = np.stack([np.eye(3), to_first])[None]  # heads are averaged
    np.testing.assert_allclose(rollout(heads, add_residual=False), 0.5 * np.eye(3) + 0.5 * to_first)


def test_rollout_rows_of_a_real_model_sum_to_one(minilm):
    result = rollout(capture_attention(minilm, SENTENCE).attentions)
    np.testing.assert_allclose(result.sum(-1), 1.0, atol=1e-6)


# -- analytic costs -------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["minilm", *PRESETS])
def test_per_layer_flops_add_up_to_the_whole_model(source):
    config = model_config(source)
    for seq in (1, 77, 300):
        layers = layer_costs(config, seq, batch=2)
        total = model_flops(config, seq, batch=2)
        assert len(layers) == config.num_hidden_layers
        assert sum(c.total_flops for c in layers) == total.total_flops
        assert sum(c.attention_core_flops for c in layers) == total.attention_core_flops
        assert sum(c.mlp_flops for c in layers) == total.mlp_flops
        assert all(c.convention for c in layers)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_equal_num_parameters(name):
    from transformers import AutoModel

    with torch.device("meta"):  # shapes only: even gpt2-small builds instantly
        model = AutoModel.from_config(preset_config(name))
    assert param_count(preset_config(name)).total == model.num_parameters()


def test_minilm_parameter_count_equals_the_loaded_model(minilm):
    assert param_count(minilm.config).total == minilm.num_parameters == 22_713_216


def test_gpt2_small_flops_per_token_agree_with_kaplan_within_two_percent():
    config = preset_config("gpt2-small")
    assert param_count(config).total == 124_439_808  # GPT2Model, the published count
    formula = kaplan_flops_per_token(config, 1024)  # 2N + 2 * n_layer * n_ctx * d_model
    counted = kaplan_convention_flops_per_token(config, 1024)
    assert abs(counted - formula) / formula < 0.02
    # Kaplan's attention term is the QK^T logits over every pair: 2 * n_ctx * d_model per layer
    assert counted == 2 * 12 * param_count(config).matmul_per_layer + 2 * 12 * 1024 * 768


def test_layer_cost_conventions_by_kind():
    seq = 512
    bert = layer_costs(preset_config("bert-base"), seq)[0]
    assert bert.pairs == seq * seq and bert.attention_core_flops == 4 * 12 * 64 * seq * seq
    assert bert.mlp_flops == 2 * seq * 768 * 3072 * 2
    llama = layer_costs(preset_config("llama-gqa"), seq)[0]
    assert llama.pairs == seq * (seq + 1) // 2  # causal
    assert llama.attention_core_flops_dense == 4 * 8 * 64 * seq * seq
    assert llama.mlp_flops == 2 * seq * 512 * 1376 * 3  # gated: three matrices
    assert llama.qkv_flops == 2 * seq * 512 * (8 + 2 * 2) * 64  # GQA shrinks K and V
    mistral = layer_costs(preset_config("mistral-swa"), seq)[0]
    assert mistral.variant == "sliding_window"
    assert mistral.pairs == sum(min(i + 1, 128) for i in range(seq))


def test_kv_cache_curve_arithmetic():
    llama = kv_cache_curve(preset_config("llama-gqa"), [0, 1000])
    per_token = 2 * 4 * 2 * 64 * 2  # keys+values, layers, kv heads, head_dim, bytes
    assert llama[1]["bytes"] == per_token * 1000
    assert llama[1]["bytes_mha"] == 4 * llama[1]["bytes"]  # 8 heads instead of 2
    assert llama[1]["bytes_mqa"] == llama[1]["bytes"] // 2
    assert llama[0]["bytes"] == 0
    mqa = kv_cache_curve(preset_config("mqa-decoder"), [1000])[0]
    assert mqa["bytes"] == llama[1]["bytes_mqa"]
    mistral = kv_cache_curve(preset_config("mistral-swa"), [100, 1000, 100_000])
    assert [r["cached_tokens"] for r in mistral] == [100, 128, 128]  # the window caps it
    assert mistral[2]["bytes"] == mistral[1]["bytes"] == per_token * 128
    assert mistral[2]["bytes_without_window"] == per_token * 100_000
    assert kv_cache_curve(model_config("minilm"), [512])[0]["bytes"] == 0  # encoders keep none


# -- errors -----------------------------------------------------------------------------------------
def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))


def test_directory_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_directory_without_safetensors_weights(tmp_path):
    model_config("minilm").to_json_file(tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"a pickle")
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors weights .*never pickle"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors(tmp_path, damage):
    directory = tiny_gpt2_dir(tmp_path / "m")
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"\x13not a safetensors file" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_model(str(directory))


def test_unknown_name_lists_the_choices():
    with pytest.raises(ModelLoadError, match="minilm, gpt2-small, bert-base, llama-gqa"):
        load_model("gpt5")
    with pytest.raises(ModelLoadError, match="implementation"):
        load_model("minilm", "flash_attention_9")


def test_load_model_is_cached(minilm):
    assert load_model("minilm") is minilm
    assert load_model(" minilm ") is minilm


# -- measured ---------------------------------------------------------------------------------------
def test_time_modules_times_each_layers_attention_and_mlp(tiny_gpt2):
    result = time_modules(load_model(tiny_gpt2), SENTENCE, repeats=2)
    assert len(result["layers"]) == 2
    assert all(x["attention_ms"] > 0 and x["mlp_ms"] > 0 for x in result["layers"])
    assert result["attention_ms"] + result["mlp_ms"] <= result["forward_ms"] * 1.01
    assert result["peak_bytes"] > 0 and result["timer"] == "perf_counter"


def test_compare_implementations_reports_instead_of_raising(tiny_gpt2):
    rows = compare_implementations(tiny_gpt2, SENTENCE, impls=("eager", "sdpa", "no_such_impl"),
                                   repeats=1)
    eager, sdpa, bad = rows
    assert eager["ok"] and sdpa["ok"] and sdpa["max_abs_diff"] < 1e-4
    assert not bad["ok"] and "unknown attention implementation" in bad["reason"]


@pytest.mark.slow
def test_flex_attention_agrees_with_eager_or_says_why():
    eager, flex = compare_implementations("minilm", SENTENCE, impls=("eager", "flex_attention"),
                                          repeats=1)
    assert eager["ok"]
    # compiling FlexAttention for the CPU needs a C++ compiler; without one, a reason in words
    assert (flex["ok"] and flex["max_abs_diff"] < 1e-4) or flex["reason"]
    assert load_model("minilm").model.config._attn_implementation == "eager"


def test_model_json_is_plain_json(minilm):
    data = model_json("minilm", SENTENCE, include_timing=False)
    json.dumps(data)  # nothing numpy or torch left
    assert data["model"]["kind"] == "encoder" and data["tokens"][0] == "[CLS]"
    layers = data["costs"]["layers"]
    assert sum(x["total_flops"] for x in layers) == data["costs"]["totals"]["total_flops"]
    assert "Kaplan" in data["costs"]["kaplan"]["convention"]
    assert np.array(data["maps"]["attentions"]).shape == (6, 12, data["seq_len"], data["seq_len"])


def test_a_capture_that_cannot_fit_is_refused_before_the_forward_pass(monkeypatch):
    # issue 16: the fit check covers model capture too
    from attn.memory import DoesNotFit
    from attn.models import capture

    loaded = capture.load_model(capture.DEFAULT_MODEL)
    need = capture.capture_bytes(loaded, 16, loaded.config.num_hidden_layers, True)
    monkeypatch.setattr(capture.memory, "free_bytes", lambda device: need - 1)
    monkeypatch.setattr(loaded, "model", None)  # a forward pass would fail on None, not refuse
    with pytest.raises(DoesNotFit, match="use fewer tokens"):
        capture.capture_attention(loaded, "a few words " * 8, max_tokens=16, with_qk=True)
    with pytest.raises(DoesNotFit, match="use fewer tokens"):
        capture.capture_qkv(loaded, "a few words " * 8, max_tokens=16, attn_implementation="eager")


def test_the_capture_fit_check_takes_a_family_the_cost_tables_do_not_know():
    # capture_attention returns any model's weights; its fit check must not need the family
    from dataclasses import replace

    from transformers import RobertaConfig

    from attn.models import capture

    loaded = capture.load_model(capture.DEFAULT_MODEL)
    config = RobertaConfig(num_attention_heads=4, hidden_size=64, num_hidden_layers=2)
    need = capture.capture_bytes(replace(loaded, config=config), 10, 0, True)
    assert need == 4 * (2 * 2 * 4 * 10 * 10 + 10 * (8 * 64 + 4 * 64) + 4 * 10 * 10)
