"""sigmoid and relu attention (issue 15): their weights on closed forms in float64, rows that do
not sum to 1 and maps that keep them so, approx_error against softmax, what autograd keeps, and
the sigmoid bias's flags, fields and links."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from attn import maps, variants
from attn.cli import EXIT_BAD_INPUT, main
from attn.cost import attention_cost
from attn.inputs import random_qkv
from attn.spec import AttentionSpec
from attn.training import saved_bytes
from attn.variants.gqa import repeat_kv
from tests.conftest import open_app
from tests.test_variants import approx_error

SPEC = AttentionSpec(batch=2, seq=13, kv_seq=29, heads=4, kv_heads=2, head_dim=8, causal=True,
                     dtype="float64")


def scaled_scores(spec: AttentionSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """q k^T / sqrt(d) by hand, and which pairs the causal (bottom-right) mask lets through."""
    q, k, _ = random_qkv(spec)
    s = q @ repeat_kv(k, spec.groups).transpose(-1, -2) / math.sqrt(spec.head_dim)
    i, j = torch.arange(spec.seq)[:, None], torch.arange(spec.kv_seq)[None, :]
    visible = j <= i + (spec.kv_seq - spec.seq) if spec.causal else torch.ones_like(i * j, dtype=torch.bool)
    return s, visible


@pytest.mark.parametrize("causal", [True, False])
def test_sigmoid_weights_are_sigmoid_of_the_scores_minus_log_kv_seq(causal):
    spec = SPEC.with_(causal=causal)
    s, visible = scaled_scores(spec)
    w = variants.get("sigmoid").weights(*random_qkv(spec)[:2], spec)
    torch.testing.assert_close(w, torch.where(visible, torch.sigmoid(s - math.log(29)), 0.0),
                               rtol=1e-12, atol=1e-15)
    # the parameters: a bias added to -log n, or in place of it
    q, k, _ = random_qkv(spec)
    torch.testing.assert_close(variants.get("sigmoid").weights(q, k, spec.with_(sigmoid_bias=1.5)),
                               torch.where(visible, torch.sigmoid(s + 1.5 - math.log(29)), 0.0))
    torch.testing.assert_close(
        variants.get("sigmoid").weights(q, k, spec.with_(sigmoid_bias=-2.0, sigmoid_log_n=False)),
        torch.where(visible, torch.sigmoid(s - 2.0), 0.0))


@pytest.mark.parametrize("causal", [True, False])
def test_relu_weights_are_relu_of_the_scores_over_kv_seq(causal):
    spec = SPEC.with_(causal=causal)
    s, visible = scaled_scores(spec)
    w = variants.get("relu").weights(*random_qkv(spec)[:2], spec)
    torch.testing.assert_close(w, torch.where(visible, torch.relu(s) / 29, 0.0), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["sigmoid", "relu"])
def test_rows_do_not_sum_to_one_and_the_map_draws_them_as_they_are(name):
    spec = SPEC.with_(batch=1)
    q, k, _ = random_qkv(spec)
    w = variants.get(name).weights(q, k, spec)[0, 1]  # head 1
    sums = w.sum(-1)
    assert (sums - 1).abs().max() > 0.1
    exact = maps.pooled_map(q, k, spec, name, head=1, max_size=64)
    assert exact.exact
    np.testing.assert_allclose(exact.values, w.float().numpy(), rtol=1e-6)
    np.testing.assert_allclose(exact.row_sums, sums.float().numpy(), rtol=1e-6)
    # pooled 4 ways along each axis: a cell is the mean over its queries of the weight on its
    # keys, the row sums the mean of the rows' sums; nothing is rescaled to sum to 1
    pooled = maps.pooled_map(q, k, spec, name, head=1, max_size=4)
    np.testing.assert_allclose(pooled.values.sum(-1), pooled.row_sums, rtol=1e-5)
    for r, (lo, hi) in enumerate(zip(pooled.q_start, pooled.q_stop)):
        assert pooled.row_sums[r] == pytest.approx(float(sums[lo:hi].mean()), rel=1e-5)
    largest = maps.pooled_map(q, k, spec, name, head=1, max_size=4, reduce="max")
    assert largest.row_sums[-1] == pytest.approx(float(sums[pooled.q_start[-1]:].max()), rel=1e-5)
    assert exact.to_dict()["row_sums"] == pytest.approx(sums.tolist(), rel=1e-6)


def test_head_statistics_read_each_row_as_a_distribution():
    # entropy, distance and keys_for_90 normalise each row, so scaling the rows (as a relu
    # row is scaled by 1/kv_seq) changes only the statistics of the weights as drawn
    w = torch.tensor([[0.2, 0.2, 0.0, 0.0], [0.1, 0.3, 0.6, 0.0]], dtype=torch.float64)
    scaled = maps.stats_from_weights(w * 0.37)
    plain = maps.stats_from_weights(w / w.sum(-1, keepdim=True))
    assert scaled.entropy_bits == pytest.approx(plain.entropy_bits)
    assert scaled.mean_distance == pytest.approx(plain.mean_distance)
    assert scaled.keys_for_90 == plain.keys_for_90
    assert scaled.sink_mass == pytest.approx(float((w * 0.37)[:, 0].mean()))  # as drawn


@pytest.mark.parametrize("name", ["sigmoid", "relu"])
def test_maps_json_carries_row_sums_and_finite_statistics(name):
    out = maps.maps_json(AttentionSpec(seq=40, heads=2, head_dim=8, causal=True, dtype="float64"),
                         name, max_size=8)
    assert len(out["map"]["row_sums"]) == 8
    for stats in out["head_stats"]:
        assert 0 <= stats["entropy_normalised"] <= 1 + 1e-9
        assert all(math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ["sigmoid", "relu"])
def test_approx_error_against_softmax_is_not_zero_even_with_every_key(name, causal):
    spec = AttentionSpec(seq=37, kv_seq=45, heads=4, kv_heads=2, head_dim=16, causal=causal,
                         dtype="float64")
    assert approx_error(name, spec) > 1e-2


@pytest.mark.parametrize("name", ["sigmoid", "relu"])
@pytest.mark.parametrize("shape", [dict(seq=64, causal=True), dict(seq=48, kv_seq=80, kv_heads=2)], ids=str)
def test_saved_bytes_are_what_autograd_keeps(name, shape):
    spec = AttentionSpec(heads=4, head_dim=16, **shape)
    q, k, v = (t.requires_grad_() for t in random_qkv(spec))
    var = variants.get(name)
    _, kept = saved_bytes(lambda: var.run(q, k, v, spec), (q, k, v))
    assert kept == attention_cost(spec, name, "train").saved_bytes


@pytest.mark.parametrize("name", ["sigmoid", "relu"])
def test_flops_are_useful_flops_of_the_visible_pairs(name):
    spec = AttentionSpec(batch=2, seq=64, heads=4, head_dim=16, causal=True)
    assert attention_cost(spec, name).flops == 4 * 2 * 4 * 16 * (64 * 65 // 2)
    assert attention_cost(spec, name).exact is False


def test_the_cli_takes_the_bias_and_refuses_a_bad_one(capsys):
    argv = ["profile", "--variant", "sigmoid", "--seq", "32", "--heads", "2", "--head-dim", "16",
            "--budget", "0.02", "--json"]
    assert main([*argv, "--sigmoid-bias", "-1.5", "--sigmoid-log-n", "false"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec"]["sigmoid_bias"] == -1.5 and data["spec"]["sigmoid_log_n"] is False
    assert data["kernel_error"] < 1e-5 and data["approx_error"] > 1e-2
    assert main(["cost", "--variant", "sigmoid", "--sigmoid-bias", "minus", "--json"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sigmoid_bias must be a number, got 'minus'" in err
    assert main(["cost", "--variant", "relu", "--seq", "64", "--json"]) == 0


@pytest.mark.usefixtures("in_process_jobs")
def test_the_playground_draws_sigmoid_and_relu_with_the_bias_fields():
    at = open_app("views/playground.py", seq="64", variants="sigmoid,relu", sigmoid_bias="0.5")
    assert not at.exception, at.exception
    field = at.number_input(key="w_sigmoid_bias")
    assert field.value == 0.5 and "sigmoid" in field.label
    assert at.toggle(key="w_sigmoid_log_n").value is True
    field.set_value(-1.25).run()
    assert not at.exception and at.query_params["sigmoid_bias"] in ("-1.25", ["-1.25"])
