"""attn.models.plan: a plan for a model's attention, what it saves (closed forms) and what it
costs in quality (MiniLM's real weights), and `attn plan` on the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attn.cli import EXIT_BAD_INPUT, main
from attn.models import encode, load_model
from attn.models.plan import LayerPlan, Plan, apply_plan, parse_plan, plan_for
from attn.models.plan_costs import plan_flops, plan_kv_cache
from attn.models.plan_quality import embedding_drift, plan_drift, ranks, spearman
from attn.models.sentences import PASSAGES, SENTENCES
from attn.models.plan_quality import sentence_embeddings
from attn.runs import RunStore

TEXT = "The old bridge was built by the Romans almost two thousand years ago and is still in use."


def _model_fixture(name: str):
    """A module fixture named after the model (load_model caches it, so it is loaded once)."""
    return pytest.fixture(scope="module", name=name.replace("-", "_"))(lambda: load_model(name))


minilm = _model_fixture("minilm")
llama_gqa = _model_fixture("llama-gqa")


def hidden(loaded, text=TEXT):
    ids, _ = encode(loaded, text)
    with torch.no_grad():
        return loaded.model(input_ids=ids).last_hidden_state


# -- parsing --------------------------------------------------------------------------------------
def test_the_compact_form_parses_and_round_trips():
    plan = parse_plan("0-4:sliding_window:128,5:sdpa", layers=6)
    assert plan.layers[:5] == (LayerPlan("sliding_window", 128),) * 5
    assert plan.layers[5] == LayerPlan("full") and plan.kv_heads is None
    assert str(plan) == "0-4:sliding_window:128,5:full"
    mixed = parse_plan("0:block_sparse:16:relu,2-3:sliding_window:8,kv:2", layers=6, activation="sigmoid")
    assert mixed.layers[0] == LayerPlan("block_sparse", 16, "relu")
    assert mixed.layers[1] == LayerPlan("full", None, "sigmoid") and mixed.kv_heads == 2
    for plan in (mixed, parse_plan("all:full", 6), parse_plan("", 6, kv_heads=1)):
        assert parse_plan(str(plan), 6) == plan
    assert parse_plan("all:full", 6).is_identity()


@pytest.mark.parametrize("text, kwargs, message", [
    ("6:full", {}, "layer 6 is out of range: the model has layers 0-5"),
    ("0:sliding_window:0", {}, "a window must be at least 1 token, got 0"),
    ("all:full", {"kv_heads": 5, "heads": 12}, "5 key/value heads do not divide the 12 attention heads"),
    ("all:full", {"activation": "tanh"}, "unknown activation 'tanh'"),
    ("0:full:tanh", {}, "unknown activation 'tanh'"),
    ("0:ring", {}, "unknown layer kind 'ring'"),
    ("0-1:full,1:sdpa", {}, "layer 1 is planned twice"),
    ("0:sliding_window", {}, "sliding_window needs its window"),
    ("all:full", {"kv_heads": 4, "heads": 8, "model_kv_heads": 2}, "cannot be pooled from the model's 2"),
])
def test_a_bad_plan_says_what_to_change_in_one_line(text, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_plan(text, 6, **kwargs)
    assert "\n" not in str(err.value)


# -- identities -------------------------------------------------------------------------------------
def test_the_identity_plan_gives_the_unmodified_models_outputs(minilm, llama_gqa):
    for loaded in (minilm, llama_gqa):
        planned = apply_plan(loaded, plan_for(loaded, "all:full"))
        assert planned.model is not loaded.model and planned.attn_implementation == "attn_plan"
        torch.testing.assert_close(hidden(planned), hidden(loaded), rtol=1e-5, atol=1e-5)
    assert minilm.model.config._attn_implementation == "eager"  # the original is untouched


def test_a_window_as_long_as_the_text_and_groups_of_one_head_are_the_identity(minilm, llama_gqa):
    tokens = encode(minilm, TEXT)[0].shape[1]
    for text, kv in ((f"all:sliding_window:{tokens}", None), ("all:full", 12), (f"0-5:block_sparse:{tokens}", None)):
        planned = apply_plan(minilm, plan_for(minilm, text, kv))
        torch.testing.assert_close(hidden(planned), hidden(minilm), rtol=1e-5, atol=1e-5)
    # a decoder's own grouping kept (2 of 2 heads) is the identity too
    planned = apply_plan(llama_gqa, plan_for(llama_gqa, "all:full", kv_heads=2))
    torch.testing.assert_close(hidden(planned), hidden(llama_gqa), rtol=1e-5, atol=1e-5)


def test_mqa_mean_pools_the_key_and_value_projections(minilm, llama_gqa):
    planned = apply_plan(minilm, plan_for(minilm, "all:full", kv_heads=3))
    key, base_key = planned.model.encoder.layer[0].attention.self.key, minilm.model.encoder.layer[0].attention.self.key
    assert key.weight.shape == (3 * 32, 384)
    torch.testing.assert_close(key.weight[:32], base_key.weight[:4 * 32].view(4, 32, 384).mean(0))
    torch.testing.assert_close(key.bias[32:64], base_key.bias[128:256].view(4, 32).mean(0))
    gqa = apply_plan(llama_gqa, plan_for(llama_gqa, "all:full", kv_heads=1))
    assert gqa.config.num_key_value_heads == 1 and llama_gqa.config.num_key_value_heads == 2
    ids, _ = encode(gqa, TEXT)
    with torch.no_grad():
        out = gqa.model(input_ids=ids, use_cache=True)
    cache = out.past_key_values
    assert cache.layers[0].keys.shape[1] == 1  # the cache holds one key/value head


def test_a_plan_changes_what_it_should(minilm):
    base = hidden(minilm)
    for text, kv in (("0-4:sliding_window:2", None), ("all:full", 1), ("all:full:sigmoid", None),
                     ("all:full:relu", None), ("all:block_sparse:2", None)):
        assert not torch.allclose(hidden(apply_plan(minilm, plan_for(minilm, text, kv))), base, atol=1e-3)


def test_the_sparse_kernel_and_the_masked_scores_agree(minilm):
    """A softmax window runs through attn's kernel; under padding it falls back to masked scores."""
    planned = apply_plan(minilm, plan_for(minilm, "all:sliding_window:3"))
    batch = minilm.tokenizer([TEXT, "A short one."], padding=True, return_tensors="pt")
    with torch.no_grad():
        padded = planned.model(**batch).last_hidden_state[0]
    torch.testing.assert_close(padded, hidden(planned)[0], rtol=1e-4, atol=1e-4)


# -- costs against closed forms -------------------------------------------------------------------------
def test_flops_match_closed_forms(minilm):
    h, d, dm, s = 12, 32, 384, 128
    plan = plan_for(minilm, "0-4:sliding_window:16,5:sdpa", kv_heads=1)
    f = plan_flops(minilm.config, plan, s)
    # |i - j| < 16 on 128 tokens: 31 keys a row, less 1 + 2 + ... + 15 at each edge
    window_pairs = 128 * 31 - 2 * (15 * 16 // 2)
    assert f["layers"][0]["attention_core_flops"] == 4 * h * d * window_pairs
    assert f["layers"][5]["attention_core_flops"] == 4 * h * d * s * s
    assert f["totals"]["attention_core_flops"] == 4 * h * d * (5 * window_pairs + s * s)
    assert f["totals"]["base_attention_core_flops"] == 6 * 4 * h * d * s * s
    assert f["totals"]["projection_flops"] == 6 * 2 * s * dm * (2 * h + 2 * 1) * d
    assert f["totals"]["base_projection_flops"] == 6 * 2 * s * dm * (4 * h) * d
    mlp = 6 * 2 * s * dm * 1536 * 2
    assert f["totals"]["total_flops"] == f["totals"]["attention_core_flops"] + f["totals"]["projection_flops"] + mlp
    assert f["totals"]["attention_core_flops_saved"] == pytest.approx(1 - (5 * window_pairs + s * s) / (6 * s * s))


def test_the_kv_cache_matches_closed_forms(minilm, llama_gqa):
    kv = plan_kv_cache(minilm.config, plan_for(minilm, "0-4:sliding_window:16", kv_heads=1), [8192])
    assert kv["bytes_per_token"] == 2 * 6 * 1 * 32 * 2 and kv["base_bytes_per_token"] == 2 * 6 * 12 * 32 * 2
    # an encoder holds every key in a forward: its windows do not shrink the keys and values
    assert kv["contexts"][0]["bytes"] == 8192 * 2 * 6 * 32 * 2
    assert kv["contexts"][0]["saved"] == pytest.approx(11 / 12)
    # a decoder's window keeps its last W keys: 2 layers windowed at 64, 2 layers whole, 1 KV head
    plan = plan_for(llama_gqa, "0-1:sliding_window:64", kv_heads=1)
    rows = plan_kv_cache(llama_gqa.config, plan, [32, 1024])["contexts"]
    per = 2 * 64 * 2  # key and value, head_dim 64, 2 bytes
    assert rows[0]["bytes"] == 4 * per * 32 and rows[0]["base_bytes"] == 4 * per * 2 * 32
    assert rows[1]["bytes"] == 2 * per * 64 + 2 * per * 1024
    from attn.models import kv_cache_curve
    assert rows[1]["base_bytes"] == kv_cache_curve(llama_gqa.config, [1024])[0]["bytes"]


# -- drift ----------------------------------------------------------------------------------------------
def test_ranks_average_ties_and_spearman_matches_hand_counts():
    np.testing.assert_array_equal(ranks(np.array([10.0, 20.0, 20.0, 5.0])), [2.0, 3.5, 3.5, 1.0])
    assert spearman(np.arange(5.0), np.arange(5.0) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    # one swap of neighbours in 5: 1 - 6 * 2 / (5 * 24) = 0.9
    assert spearman(np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 1, 3, 4, 5])) == pytest.approx(0.9)


def test_drift_on_hand_made_embeddings():
    base = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    same = embedding_drift(base, 3 * base)  # scale does not matter: both are normalised
    assert same["mean_cosine"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0)
    turned = base.clone()
    turned[0] = torch.tensor([0.0, 0, 1])  # the first sentence now says what the third says
    drift = embedding_drift(base, turned)
    assert drift["mean_cosine"] == pytest.approx(0.75) and drift["min_cosine"] == pytest.approx(0.0)
    assert drift["pairs"] == 6 and drift["spearman"] < 1


def test_each_texts_nearest_neighbour_is_its_retelling(minilm):
    """The shipped texts give retrieval a ranking worth keeping: under the base model every
    sentence's (and passage's) nearest neighbour is the one written as its paraphrase."""
    for texts in (SENTENCES, PASSAGES):
        assert len(set(texts)) == len(texts) and len(texts) % 2 == 0
        e = sentence_embeddings(minilm, texts)
        sims = (e @ e.T).fill_diagonal_(-2)
        assert sims.argmax(1).tolist() == [i ^ 1 for i in range(len(texts))]


def test_a_window_on_minilm_drifts_a_little_and_a_bigger_change_more(minilm):
    assert len(SENTENCES) >= 32 and len(set(SENTENCES)) == len(SENTENCES)
    # the sentences are 8 to 22 tokens: a window of 16 (31 keys) cuts a few, one of 4 cuts most
    small = plan_drift(minilm, apply_plan(minilm, plan_for(minilm, "0-4:sliding_window:16")))
    assert 0.9 < small["mean_cosine"] < 1 and 0.9 < small["spearman"] < 1
    large = plan_drift(minilm, apply_plan(minilm, plan_for(minilm, "0-4:sliding_window:4")))
    assert 0.3 < large["mean_cosine"] < small["mean_cosine"] and large["spearman"] < small["spearman"]
    identity = plan_drift(minilm, apply_plan(minilm, plan_for(minilm, "all:full")))
    assert identity["mean_cosine"] == pytest.approx(1.0, abs=1e-6) and identity["spearman"] == pytest.approx(1.0)


# -- the command line ---------------------------------------------------------------------------------
def test_attn_plan_prints_costs_and_quality_and_saves(capsys):
    code = main(["plan", "--model", "minilm", "--layers", "0-4:sliding_window:16,5:sdpa", "--kv-heads", "1",
                 "--no-timing", "--save", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["plan"]["plan"] == "0-4:sliding_window:16,5:full,kv:1" and data["seq_len"] == 128
    assert data["quality"]["measured"] and 0 < data["quality"]["mean_cosine"] < 1
    assert data["quality"]["passages"]["sentences"] == len(PASSAGES)
    assert 0 < data["quality"]["passages"]["mean_cosine"] < 1
    assert data["kv_cache"]["contexts"][0]["context"] == 1024 and data["kv_cache"]["contexts"][-1]["context"] == 131072
    run = RunStore().get(data["run_id"])
    assert run.kind == "plan" and run.variant == data["plan"]["plan"]


def test_attn_plan_on_a_preset_shows_cost_only_and_times_decode(capsys):
    code = main(["plan", "--model", "llama-gqa", "--layers", "all:sliding_window:8", "--kv-heads", "1",
                 "--max-tokens", "16", "--repeats", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert not data["quality"]["measured"] and "random weights" in data["quality"]["reason"]
    assert data["timing"]["forward_ms"] > 0 and data["timing"]["base_forward_ms"] > 0
    assert data["decode"]["measured"] and data["decode"]["decode_ms"] > 0
    assert data["decode"]["cache_bytes"] < data["decode"]["base_cache_bytes"]


@pytest.mark.parametrize("argv, message", [
    (["--layers", "6:full"], "layer 6 is out of range"),
    (["--layers", "0:sliding_window:0"], "a window must be at least 1 token"),
    (["--layers", "all:full", "--kv-heads", "5"], "do not divide the 12 attention heads"),
    (["--layers", "all:full", "--activation", "tanh"], "unknown activation"),
])
def test_a_bad_plan_exits_2_with_one_line(capsys, argv, message):
    assert main(["plan", "--model", "minilm", "--no-timing", *argv]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and message in err and err.count("\n") == 1


def test_plan_is_a_run_kind(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.save("plan", {"model": "minilm", "seq": 128}, {"plan": "0-5:full"}, variant="0-5:full")
    assert [s.kind for s in store.list(kind="plan")] == ["plan"] and store.get(run_id).kind == "plan"
    assert isinstance(Plan(()), Plan)


def test_the_activations_follow_their_formulas():
    from attn.models.plan import plan_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    module = torch.nn.Module()
    module.is_causal = True
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    scores = (q @ k.transpose(2, 3)) * 0.5
    n = causal.sum(-1, keepdim=True).float()  # the keys each query may see: 1, 2, ..., 5
    for activation, expected in (("sigmoid", torch.sigmoid(scores - torch.log(n)) * causal),
                                 ("relu", torch.relu(scores) / n * causal)):
        module._attn_plan_layer = LayerPlan(activation=activation)
        out, weights = plan_attention(module, q, k, v, causal[None, None], scaling=0.5)
        torch.testing.assert_close(weights, expected)
        torch.testing.assert_close(out, (expected @ v).transpose(1, 2))


def test_a_decode_step_sees_the_same_window_as_the_whole_forward(llama_gqa):
    """Queries sit at the last positions of the keys, as the cache places them: one step after a
    prefill gives the last position of a forward over the whole text."""
    planned = apply_plan(llama_gqa, plan_for(llama_gqa, "0:sliding_window:4,1:block_sparse:4:relu,2:full:sigmoid",
                                             kv_heads=1))
    ids, _ = encode(planned, TEXT)
    with torch.no_grad():
        whole = planned.model(input_ids=ids).last_hidden_state[:, -1]
        prefill = planned.model(input_ids=ids[:, :-1], use_cache=True)
        step = planned.model(input_ids=ids[:, -1:], cache=prefill.past_key_values, use_cache=True)
    torch.testing.assert_close(step.last_hidden_state[:, -1], whole, rtol=1e-4, atol=1e-4)


def test_block_sparse_on_a_model_with_its_own_window_is_refused(capsys):
    assert main(["plan", "--model", "mistral-swa", "--layers", "0:block_sparse:16", "--no-timing"]) == EXIT_BAD_INPUT
    assert "already has a sliding window of 128" in capsys.readouterr().err


def test_kv_heads_of_a_model_that_claims_10_30_heads_are_refused_at_once():
    # a hostile config may claim any head count: the divisors are not listed past 2^16
    from attn.models.plan import check_kv_heads

    with pytest.raises(ValueError, match="do not divide the 1000000000000000000000000000000 attention heads: choose a divisor"):
        check_kv_heads(7, 10**30, 10**30)
