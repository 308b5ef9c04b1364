"""attn.models.serving, training and lengths on tiny random models (2 layers, d 64): the KV cache
grows by exactly the predicted bytes per token, decode is timed step by step, the attention layers'
train step runs and frees what it kept, and every error is one line."""
from __future__ import annotations

import pytest
import torch

from attn.models import attention_train_step, decode_unsupported, kv_cache_curve, serving_curve
from attn.models.lengths import measure_lengths, one_line, projected_s
from attn.models.sources import LoadedModel, model_kind
from attn.models.training import attention_calls, train_step_bytes_estimate

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=100,
            max_position_embeddings=128)


def tiny(kind: str) -> LoadedModel:
    """A random-weight model of one family, as load_model would hand it over."""
    from transformers import AutoModel, BertConfig, GPT2Config, LlamaConfig, MistralConfig

    config = {
        "llama": lambda: LlamaConfig(**TINY, num_key_value_heads=2),
        "mistral": lambda: MistralConfig(**TINY, num_key_value_heads=2, sliding_window=16),
        "gpt2": lambda: GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=64),
        "bert": lambda: BertConfig(**TINY),
    }[kind]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModel.from_config(config, attn_implementation="eager").eval()
    return LoadedModel(name=f"tiny-{kind}", model=model, tokenizer=None, config=model.config,
                       kind=model_kind(config), source="test", num_parameters=model.num_parameters(),
                       attn_implementation="eager")


@pytest.fixture(scope="module")
def llama():
    return tiny("llama")


# -- serving ---------------------------------------------------------------------------------------
def test_the_cache_holds_exactly_the_predicted_bytes_and_grows_by_them_per_token(llama):
    steps = 3
    result = serving_curve(llama, contexts=[16, 48], steps=steps, repeats=2, budget_s=600)
    per_token = 2 * 2 * 2 * 16 * 4  # keys and values, 2 layers, 2 K/V heads of 16, float32
    assert result["kv_bytes_per_token"] == per_token == kv_cache_curve(llama.config, [1], 4)[0]["bytes"]
    for point in result["points"]:
        assert point["status"] == "ok", point
        context = point["context"]
        assert point["cached_tokens"] == context
        assert point["cache_bytes"] == point["cache_held_bytes"] == point["cache_bytes_predicted"] == context * per_token
        # one warm-up step and `steps` timed ones, one token each
        assert point["cached_tokens_end"] == context + steps + 1
        assert point["cache_bytes_end"] - point["cache_bytes"] == (steps + 1) * per_token
        assert point["cache_bytes_end"] == point["cache_bytes_end_predicted"]


def test_decode_is_timed_step_by_step(llama):
    result = serving_curve(llama, contexts=[16], steps=4, repeats=1, budget_s=600)
    (point,) = result["points"]
    assert len(point["decode_step_ms"]) == 4 and all(ms > 0 for ms in point["decode_step_ms"])
    assert min(point["decode_step_ms"]) <= point["decode_ms"] <= max(point["decode_step_ms"])
    assert point["prefill_ms"] > 0 and point["prefill_ms_p10"] <= point["prefill_ms"] <= point["prefill_ms_p90"]
    assert result["timer"] == "perf_counter" and result["dtype"] == "float32"
    assert llama.model.config._attn_implementation == "eager", "switched back after sdpa"


def test_a_sliding_window_cache_keeps_window_minus_one_tokens_as_a_view():
    loaded = tiny("mistral")
    result = serving_curve(loaded, contexts=[8, 48], steps=2, repeats=1, budget_s=600)
    short, long = result["points"]
    per_token = 2 * 2 * 2 * 16 * 4
    assert short["cache_bytes"] == short["cache_bytes_predicted"] == 8 * per_token, "inside the window"
    assert long["cached_tokens"] == 15 and long["cache_bytes"] == 15 * per_token
    assert long["cache_bytes_predicted"] == 16 * per_token, "kv_cache_curve counts the whole window"
    assert long["cache_held_bytes"] == 48 * per_token, "the prompt's keys stay allocated after the prefill"
    assert long["cache_held_bytes_end"] == 16 * per_token == long["cache_bytes_end_predicted"]


def test_contexts_past_the_positions_are_replaced_by_the_last_that_fits():
    loaded = tiny("gpt2")  # 64 positions
    result = serving_curve(loaded, contexts=[16, 200], steps=3, repeats=1, budget_s=600)
    assert [p["context"] for p in result["points"]] == [16, 60]
    assert "200 left out" in result["note"] and "64 positions" in result["note"]
    assert all(p["cache_bytes"] == p["cache_bytes_predicted"] for p in result["points"])


def test_an_encoder_has_no_decode_and_says_why_in_one_line():
    bert = tiny("bert")
    reason = decode_unsupported(bert)
    assert "encoder" in reason and "no KV cache" in reason and len(reason.splitlines()) == 1
    with pytest.raises(ValueError, match="encoder") as err:
        serving_curve(bert, contexts=[16])
    assert len(str(err.value).splitlines()) == 1
    assert decode_unsupported(tiny("gpt2")) is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(contexts=[0]), "contexts must be whole numbers"),
    (dict(contexts=[16], steps=0), "steps must be at least 1"),
    (dict(contexts=[16], steps=200), "too few for 201 decode steps"),
])
def test_bad_sizes_are_one_line_errors(llama, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        serving_curve(llama, **kwargs)
    assert len(str(err.value).splitlines()) == 1


# -- the attention layers' train step ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["llama", "bert", "gpt2"])
def test_the_train_step_times_and_weighs_every_attention_layer(kind):
    loaded = tiny(kind)
    before = [p.detach().clone() for p in loaded.model.parameters()]
    result = attention_train_step(loaded, seq_lens=[16, 32], repeats=2, budget_s=600)
    assert result["layers"] == 2 and result["kind"] == loaded.kind
    for point in result["points"]:
        assert point["status"] == "ok", point
        assert point["forward_ms"] > 0 and point["backward_ms"] > 0
        assert 0 < point["peak_bytes"] <= point["estimate_bytes"], "the estimate is an upper bound"
    # the step leaves the shared model as it was: no gradients kept, no weight changed
    assert all(p.grad is None for p in loaded.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, loaded.model.parameters()))


def test_the_replayed_calls_give_what_the_model_computed(llama):
    """Each attention module, called again with the arguments it was given, returns what it
    returned inside the model: the step times the model's own attention work."""
    ids = torch.randint(100, (1, 24), generator=torch.Generator().manual_seed(1))
    seen = []
    modules = [call[0] for call in attention_calls(llama, ids)]
    handles = [m.register_forward_hook(lambda m, a, out: seen.append(out[0].detach().clone())) for m in modules]
    try:
        calls = attention_calls(llama, ids)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        for (module, args, kwargs), expected in zip(calls, seen):
            torch.testing.assert_close(module(*args, **kwargs)[0], expected)


def test_the_peak_estimate_grows_with_the_scores():
    from transformers import LlamaConfig

    config = LlamaConfig(**TINY, num_key_value_heads=2)
    small, large = train_step_bytes_estimate(config, 256), train_step_bytes_estimate(config, 512)
    assert 2 * small < large < 5 * small, "S x S scores: between linear and quadratic growth"


# -- points against length ---------------------------------------------------------------------------
def test_a_failed_point_is_one_line_and_stops_the_longer_ones():
    def measure(n):
        if n == 2:
            raise RuntimeError("first line\nsecond line\nthird")
        return {"value": n}
    rows = measure_lengths([1, 2, 4], measure, lambda n: 0, "cpu", budget_s=600)
    assert rows[0]["status"] == "ok" and rows[0]["value"] == 1
    assert rows[1]["status"] == "failed: RuntimeError: first line"
    assert rows[2]["status"] == "not measured: seq 2 failed"
    assert one_line(ValueError("")) == "ValueError"


def test_a_point_that_cannot_fit_is_refused_before_it_runs():
    ran = []
    rows = measure_lengths([1, 2], lambda n: ran.append(n) or {}, lambda n: 2**60, "cpu", budget_s=600,
                           key="context")
    assert not ran
    assert rows[0]["status"].startswith("does not fit: needs ~") and "free on cpu" in rows[0]["status"]
    assert rows[1]["status"] == "not measured: context 1 did not fit"


def test_the_budget_and_a_cancel_stop_the_curve():
    rows = measure_lengths([1, 2, 4], lambda n: {}, lambda n: 0, "cpu", budget_s=0.0)
    assert rows[0]["status"] == "ok", "the first point runs: nothing to project from"
    assert rows[1]["status"].startswith("not measured: about") and "of the 0 s budget left" in rows[1]["status"]
    assert rows[2]["status"] == rows[1]["status"]
    seen = []
    rows = measure_lengths([1, 2], lambda n: {}, lambda n: 0, "cpu", budget_s=600, cancelled=lambda: True,
                           on_point=lambda row, fraction: seen.append(fraction))
    assert [r["status"] for r in rows] == ["not measured: cancelled"] * 2 and seen == [0.5, 1.0]


def test_projection_follows_the_measured_growth():
    assert projected_s([], 10) is None
    assert projected_s([(100, 1.0)], 200) == pytest.approx(4.0), "quadratic from one point"
    assert projected_s([(100, 1.0), (200, 2.0)], 400) == pytest.approx(4.0), "linear growth measured"
    assert projected_s([(100, 1.0), (200, 1.0)], 400) == pytest.approx(2.0), "never below linear"
