"""Attention maps: pooled maps against the exact weights, memory at length, head statistics."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from attn import maps, variants
from attn.inputs import random_qkv
from attn.memory import cpu_peak_bytes
from attn.spec import AttentionSpec

# small parameters so that every variant does something visible at these sizes
SMALL = dict(heads=4, kv_heads=2, head_dim=8, dtype="float64", window=7, block=8, top_k=5,
             features=16, rank=6, batch=2)
SHAPES = [(24, 30), (30, 24)]  # kv_seq > seq, and seq > kv_seq (first queries see no key)


def small_cases():
    for name in variants.names():
        for causal in (False, True):
            for seq, kv_seq in SHAPES:
                spec = AttentionSpec(seq=seq, kv_seq=kv_seq, causal=causal, **SMALL)
                if variants.get(name).unsupported(spec, "cpu"):
                    continue
                yield pytest.param(name, spec, id=f"{name}-{'causal' if causal else 'full'}-{seq}x{kv_seq}")


def exact_weights(spec: AttentionSpec, name: str, batch: int, head: int):
    """The full (seq x kv_seq) matrix in float64, straight from the variant."""
    q, k, _ = random_qkv(spec)
    return q, k, variants.get(name).weights(q, k, spec, None)[batch, head].numpy()


def linspace_edges(n: int, cells: int) -> list[int]:
    return [i * n // cells for i in range(cells + 1)]


def block_reduce(w: np.ndarray, q_edges: list[int], k_edges: list[int], reduce: str) -> np.ndarray:
    """The definition, cell by cell: mean over the cell's queries of the sum over its keys."""
    out = np.zeros((len(q_edges) - 1, len(k_edges) - 1))
    for r in range(len(q_edges) - 1):
        for c in range(len(k_edges) - 1):
            cell = w[q_edges[r]:q_edges[r + 1], k_edges[c]:k_edges[c + 1]]
            out[r, c] = cell.sum(1).mean() if reduce == "mean" else cell.max()
    return out


# -- pooled maps --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, spec", small_cases())
def test_small_map_is_the_exact_weight_matrix(name, spec):
    # head 3 reads kv head 1 under GQA; block_rows 7 leaves a short last block
    q, k, w = exact_weights(spec, name, batch=1, head=3)
    pm = maps.pooled_map(q, k, spec, name, batch=1, head=3, max_size=64, block_rows=7)
    assert pm.exact and pm.kv_head == 1
    assert pm.values.dtype == np.float32 and pm.values.shape == (spec.seq, spec.kv_seq)
    np.testing.assert_allclose(pm.values, w, atol=1e-6)
    assert pm.q_edges.tolist() == list(range(spec.seq + 1))


@pytest.mark.parametrize("reduce", ["mean", "max"])
@pytest.mark.parametrize("name, spec", small_cases())
def test_large_map_is_the_block_reduction_of_the_exact_matrix(name, spec, reduce):
    q, k, w = exact_weights(spec, name, batch=1, head=2)
    # 7 cells divide neither 24 nor 30: runs of 3 and 4 queries, 4 and 5 keys
    pm = maps.pooled_map(q, k, spec, name, batch=1, head=2, max_size=7, reduce=reduce, block_rows=5)
    q_edges, k_edges = linspace_edges(spec.seq, 7), linspace_edges(spec.kv_seq, 7)
    assert not pm.exact and pm.values.shape == (7, 7)
    assert pm.q_edges.tolist() == q_edges and pm.k_edges.tolist() == k_edges
    np.testing.assert_allclose(pm.values, block_reduce(w, q_edges, k_edges, reduce), atol=1e-6)


def test_only_the_long_axis_is_pooled():
    spec = AttentionSpec(seq=12, kv_seq=40, heads=1, head_dim=8, dtype="float64", causal=True)
    q, k, w = exact_weights(spec, "dense", 0, 0)
    pm = maps.pooled_map(q, k, spec, "dense", max_size=16)
    assert pm.values.shape == (12, 16) and not pm.exact
    np.testing.assert_allclose(pm.values, block_reduce(w, list(range(13)), linspace_edges(40, 16), "mean"),
                               atol=1e-6)


def test_mean_pooled_rows_are_distributions():
    spec = AttentionSpec(seq=200, kv_seq=300, heads=2, head_dim=16, causal=True)
    q, k, _ = random_qkv(spec)
    for name in ("dense", "sliding_window", "performer", "topk"):
        pm = maps.pooled_map(q, k, spec, name, head=1, max_size=32)
        np.testing.assert_allclose(pm.values.sum(1), 1.0, atol=1e-5)


def test_mean_pooled_rows_of_queries_that_see_nothing_sum_to_their_share():
    # bottom-right causal with 30 queries and 24 keys: queries 0..5 see no key
    spec = AttentionSpec(seq=30, kv_seq=24, heads=1, head_dim=8, causal=True)
    q, k, _ = random_qkv(spec)
    pm = maps.pooled_map(q, k, spec, "dense", max_size=3)  # 10 queries a row
    np.testing.assert_allclose(pm.values.sum(1), [0.4, 1.0, 1.0], atol=1e-6)


def fully_masked(pm: maps.PooledMap, spec: AttentionSpec, allowed) -> np.ndarray:
    """Cells in which no (query, key) pair is allowed by the mask function."""
    out = np.zeros(pm.values.shape, dtype=bool)
    qi, kj = torch.arange(spec.seq)[:, None], torch.arange(spec.kv_seq)[None, :]
    full = allowed(qi, kj).numpy()
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[r, c] = not full[pm.q_edges[r]:pm.q_edges[r + 1], pm.k_edges[c]:pm.k_edges[c + 1]].any()
    return out


@pytest.mark.parametrize("name, reduce", [("dense", "mean"), ("sliding_window", "mean"),
                                          ("sliding_window", "max"), ("block_sparse", "mean")])
def test_masked_cells_are_exactly_zero(name, reduce):
    spec = AttentionSpec(seq=96, heads=1, head_dim=8, causal=True, window=6, block=8, n_random=0)
    q, k, _ = random_qkv(spec)
    pm = maps.pooled_map(q, k, spec, name, max_size=20, reduce=reduce)
    masked = fully_masked(pm, spec, variants.get(name).mask(spec).fn)
    assert masked.sum() > 100  # the upper triangle, and the far band for sliding_window
    assert (pm.values[masked] == 0).all()
    assert (pm.values[~masked] > 0).all()


def test_cells_say_which_queries_and_keys_they_cover():
    spec = AttentionSpec(seq=64, kv_seq=33, heads=1, head_dim=8)
    q, k, _ = random_qkv(spec)
    pm = maps.pooled_map(q, k, spec, "dense", max_size=2)
    assert pm.cell_label(1, 0) == "queries 32-63 x keys 0-15"
    assert pm.q_start.tolist() == [0, 32] and pm.q_stop.tolist() == [32, 64]
    assert pm.k_start.tolist() == [0, 16] and pm.k_stop.tolist() == [16, 33]
    exact = maps.pooled_map(q[:, :, :2], k[:, :, :2], spec.with_(seq=2, kv_seq=2), "dense")
    assert exact.cell_label(1, 0) == "query 1 x key 0"
    json.dumps(pm.to_dict())


def test_bad_requests_say_what_to_change():
    spec = AttentionSpec(seq=16, heads=2, head_dim=8, causal=True)
    q, k, _ = random_qkv(spec)
    with pytest.raises(ValueError, match="head 2 does not exist"):
        maps.pooled_map(q, k, spec, "dense", head=2)
    with pytest.raises(ValueError, match="reduce"):
        maps.pooled_map(q, k, spec, "dense", reduce="median")
    with pytest.raises(ValueError, match="causal"):
        maps.pooled_map(q, k, spec, "linformer")
    with pytest.raises(ValueError, match="spec says"):
        maps.pooled_map(q[:, :, :8], k, spec, "dense")


# -- memory at length -------------------------------------------------------------------------------
SEQ_ALLOCATION = 8192 * 8192 * 4  # one seq x kv_seq float32 matrix: 256 MiB


@pytest.mark.parametrize("name", ["dense", "sliding_window"])
def test_pooled_map_never_allocates_a_seq_by_kv_matrix(name):
    spec = AttentionSpec(seq=8192, heads=1, head_dim=64, causal=True)
    q, k, _ = random_qkv(spec)
    peak = cpu_peak_bytes(lambda: maps.pooled_map(q, k, spec, name, max_size=512))
    assert 0 < peak < SEQ_ALLOCATION / 4


@pytest.mark.slow
def test_head_stats_never_allocate_a_seq_by_kv_matrix():
    spec = AttentionSpec(seq=8192, heads=1, head_dim=64, causal=True)
    q, k, _ = random_qkv(spec)
    peak = cpu_peak_bytes(lambda: maps.head_stats(q, k, spec, "dense"))
    assert 0 < peak < SEQ_ALLOCATION / 4


# -- head statistics ---------------------------------------------------------------------------------
def test_uniform_rows_have_full_entropy():
    stats = maps.stats_from_weights(np.full((4, 8), 1 / 8))
    assert stats.entropy_bits == pytest.approx(3.0)
    assert stats.entropy_normalised == pytest.approx(1.0)
    assert stats.keys_for_90 == 8  # 7 keys hold 87.5%
    # exactly 90% in 9 of 10 keys: rounding must not ask for a 10th
    assert maps.stats_from_weights(np.full((3, 10), 0.1, dtype=np.float32)).keys_for_90 == 9


def test_one_hot_rows_have_no_entropy():
    w = np.zeros((5, 7))
    w[np.arange(5), [3, 0, 6, 2, 2]] = 1.0
    stats = maps.stats_from_weights(w)
    assert stats.entropy_bits == 0 and stats.entropy_normalised == 0
    assert stats.keys_for_90 == 1


def test_a_diagonal_map_attends_to_itself():
    stats = maps.stats_from_weights(np.eye(6))
    assert stats.diagonal_mass == 1 and stats.mean_distance == 0 and stats.sink_mass == pytest.approx(1 / 6)


def test_a_sink_takes_all_the_mass():
    w = np.zeros((6, 6))
    w[:, 0] = 1.0
    stats = maps.stats_from_weights(w)
    assert stats.sink_mass == 1
    assert stats.mean_distance == pytest.approx(np.mean(np.arange(6)))  # row i looks i back
    assert stats.diagonal_mass == pytest.approx(1 / 6)  # only row 0's own key is the sink


def test_positions_and_visible_keys_are_the_callers():
    # two queries at key positions 2 and 3, each half on key 0 and half on key 1
    w = np.array([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0]])
    stats = maps.stats_from_weights(w, positions=[2, 3], visible=[3, 4])
    assert stats.mean_distance == pytest.approx((1.5 + 2.5) / 2)
    assert stats.entropy_normalised == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)
    assert stats.diagonal_mass == 0
    # a row that sees a single key has nothing to choose: normalised entropy 0, not 0/0
    assert maps.stats_from_weights(np.array([[1.0, 0.0]]), visible=[1]).entropy_normalised == 0


def test_rows_that_see_nothing_do_not_count():
    w = np.array([[0.0, 0.0], [0.5, 0.5]])
    stats = maps.stats_from_weights(w)
    assert stats.rows == 1 and stats.entropy_bits == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["dense", "sliding_window", "performer", "topk"])
def test_head_stats_blockwise_equal_stats_of_the_full_matrix(name):
    spec = AttentionSpec(seq=30, kv_seq=24, causal=True, **SMALL)
    q, k, _ = random_qkv(spec)
    variant = variants.get(name)
    full = variant.weights(q, k, spec, None)[1]  # batch item 1, (H, S, KV)
    allowed = variant.mask(spec).fn(torch.arange(spec.seq)[:, None], torch.arange(spec.kv_seq)[None, :])
    positions = torch.arange(spec.seq) + spec.position_offset
    stats = maps.head_stats(q, k, spec, name, batch=1, block_rows=4)
    assert [s.head for s in stats] == [0, 1, 2, 3] and [s.kv_head for s in stats] == [0, 0, 1, 1]
    for h, s in enumerate(stats):
        ref = maps.stats_from_weights(full[h], positions, visible=allowed.sum(-1), head=h)
        assert s.rows == ref.rows == 24  # 6 queries see no key
        for field in ("entropy_bits", "entropy_normalised", "mean_distance", "sink_mass",
                      "diagonal_mass", "keys_for_90"):
            assert getattr(s, field) == pytest.approx(getattr(ref, field), rel=1e-9, abs=1e-12)


def test_sharp_attention_has_less_entropy_than_flat():
    spec = AttentionSpec(seq=64, heads=1, head_dim=16)
    sharp = maps.head_stats(*random_qkv(spec, temperature=0.2)[:2], spec, "dense")[0]
    flat = maps.head_stats(*random_qkv(spec, temperature=5.0)[:2], spec, "dense")[0]
    assert sharp.entropy_normalised < 0.8 < flat.entropy_normalised
    assert sharp.keys_for_90 < flat.keys_for_90


# -- what the command line prints ------------------------------------------------------------------------
def test_maps_json_has_the_map_and_every_heads_statistics():
    spec = AttentionSpec(seq=100, heads=3, head_dim=16, causal=True)
    out = maps.maps_json(spec, "sliding_window", head=2, max_size=32, reduce="max", temperature=0.5)
    assert {"variant", "spec", "device", "map", "head_stats"} <= out.keys()
    assert out["variant"] == "sliding_window" and out["device"] == "cpu"
    assert out["map"]["head"] == 2 and out["map"]["reduce"] == "max"
    assert np.array(out["map"]["values"]).shape == (32, 32)
    assert [s["head"] for s in out["head_stats"]] == [0, 1, 2]
    # the drawn head's statistics come from the same pass as its map
    q, k, _ = random_qkv(spec, 0.5)
    assert out["head_stats"] == [s.to_dict() for s in maps.head_stats(q, k, spec, "sliding_window")]
    json.dumps(out)


def test_a_decode_map_of_a_models_text_is_its_last_tokens_over_the_whole_text():
    # in decode the text is the cache and its last tokens the new ones: their rows of the causal map
    from attn.sources import InputSource

    source = InputSource(kind="model", text="the cat sat on the mat and looked at the door")
    full = maps.maps_json(AttentionSpec(causal=True), "dense", source=source)
    step = maps.maps_json(AttentionSpec(seq=2), "dense", source=source, mode="decode")
    tokens = full["spec"]["seq"]
    assert (step["spec"]["seq"], step["spec"]["kv_seq"]) == (2, tokens)
    assert step["map"]["exact"] and len(step["map"]["values"]) == 2
    np.testing.assert_allclose(step["map"]["values"], full["map"]["values"][-2:], atol=1e-6)


def test_a_map_past_the_compute_bound_is_refused_before_any_input():
    # issue 16: dense at seq 200,000 computed for hours; the bound counts every head's rows
    from attn.maps import MAX_MAP_WEIGHTS, check_maps_fit, maps_weights

    spec = AttentionSpec(seq=200_000, heads=8, head_dim=64)
    assert maps_weights(spec) > MAX_MAP_WEIGHTS["cpu"]
    with pytest.raises(ValueError, match=r"use seq <= 11,585 at 8 heads"):
        check_maps_fit(spec, "dense", "cpu")
    check_maps_fit(AttentionSpec(seq=11_585, heads=8, head_dim=64), "dense", "cpu")  # the length it names
    # a GPU computes ~1000x more: at 100,000 tokens the same map is within its bound
    assert maps_weights(AttentionSpec(seq=100_000, heads=8, head_dim=64)) <= MAX_MAP_WEIGHTS["cuda"]


def test_maps_json_draws_only_the_batch_item_it_maps(monkeypatch):
    """A map and its statistics are batch item 0's: batch 4096 draws one item, not 13 GB (#16)."""
    drawn = []
    real = maps.random_qkv
    monkeypatch.setattr(maps, "random_qkv", lambda s, *a, **kw: drawn.append(s.batch) or real(s, *a, **kw))
    spec = AttentionSpec(seq=512, heads=8, head_dim=64, causal=True, batch=4096)
    out = maps.maps_json(spec, "sdpa", head=1, max_size=16)
    assert drawn == [1]
    assert out["spec"]["batch"] == 4096 and out["map"]["spec"]["batch"] == 4096, "the spec asked for"
    one = maps.maps_json(spec.with_(batch=1), "sdpa", head=1, max_size=16)
    assert out["map"]["values"] == one["map"]["values"] and out["head_stats"] == one["head_stats"]


# -- in the worker (attn.tasks.maps_task): a bar that moves, a cancel that is heard ----------------
def test_progress_counts_every_heads_rows_and_changes_nothing_in_the_maps():
    spec = AttentionSpec(seq=3000, heads=3, head_dim=8, causal=True)  # 349 rows a block: 9 blocks a head
    calls = []
    out = maps.maps_json(spec, "dense", head=1, max_size=16, progress=lambda *c: calls.append(c))
    assert calls[-1] == (9000, 9000) and {total for _, total in calls} == {9000}
    done = [rows for rows, _ in calls]
    assert done == sorted(done) and len(done) == 27, "once a block, across the heads in order"
    assert calls[9] == (3000 + 349, 9000), "the second head's first block counts the first head's rows"
    assert out == maps.maps_json(spec, "dense", head=1, max_size=16)


def test_maps_task_returns_maps_json_and_reports_a_step_a_percent(in_process_jobs):
    from attn import tasks

    spec = AttentionSpec(seq=2048, heads=2, head_dim=8)  # 512 rows a block: 8 blocks in all
    handle = in_process_jobs.submit(tasks.maps_task, spec.to_dict(), "sdpa", 1, 32, "max", 0.5, kind="maps")
    got = handle.result(timeout=60)
    assert got == maps.maps_json(spec, "sdpa", 1, 32, "max", 0.5)
    assert handle.progress == (1.0, "sdpa: 4,096 of 4,096 rows of weights")


def test_maps_task_hears_a_cancel_within_a_block_of_rows(in_process_jobs):
    from attn import tasks
    from attn.jobs import JobCancelled

    # 2^30 weights, the CPU's bound: minutes of work, 32 rows (0.1 s) a block
    spec = AttentionSpec(seq=32768, heads=1, kv_heads=1, head_dim=8)
    handle = in_process_jobs.submit(tasks.maps_task, spec.to_dict(), "dense", kind="maps")
    deadline = time.monotonic() + 60
    while handle.progress.fraction == 0.0:  # walking: past the inputs
        assert time.monotonic() < deadline and not handle.done(), handle
        time.sleep(0.02)
    handle.cancel()
    assert handle.wait(10), "a block is a fraction of a second: the cancel is heard at the next"
    assert handle.status == "cancelled" and handle.progress.fraction < 0.5
    with pytest.raises(JobCancelled):
        handle.result(0)
