"""AttentionSpec: defaults, derived sizes, round trips, and messages a person can act on."""
from __future__ import annotations

import pytest

import attn.variants  # noqa: F401  (the variants declare the parameters a spec checks)
from attn.spec import AttentionSpec


def test_defaults_follow_the_other_sizes():
    spec = AttentionSpec(seq=100, heads=12, head_dim=64)
    assert (spec.kv_seq, spec.kv_heads, spec.d_model) == (100, 12, 768)
    assert spec.groups == 1 and spec.dtype_bytes == 4


def test_gqa_and_mqa_groups():
    assert AttentionSpec(heads=32, kv_heads=8).groups == 4
    assert AttentionSpec(heads=32, kv_heads=1).groups == 32  # MQA: every head shares one


@pytest.mark.parametrize("align,offset", [("bottom_right", 90), ("top_left", 0)])
def test_position_offset_follows_the_causal_alignment(align, offset):
    assert AttentionSpec(seq=10, kv_seq=100, causal=True, causal_align=align).position_offset == offset


def test_with_validates_again_and_round_trips_through_a_dict():
    spec = AttentionSpec(seq=64, kv_seq=80, heads=8, kv_heads=2, causal=True, window=16)
    assert spec.with_(window=8).window == 8 and spec.window == 16  # frozen: a copy
    assert AttentionSpec.from_dict(spec.to_dict()) == spec
    assert AttentionSpec.from_dict({**spec.to_dict(), "from_a_later_version": 1}) == spec
    assert hash(spec) == hash(AttentionSpec.from_dict(spec.to_dict()))  # a cache key
    with pytest.raises(ValueError, match="window"):
        spec.with_(window=0)


@pytest.mark.parametrize("changes,message", [
    (dict(heads=12, kv_heads=5), r"heads \(12\) must be a multiple of kv_heads \(5\).*1, 2, 3, 4, 6, 12"),
    (dict(seq=0), "seq must be at least 1, got 0"),
    (dict(kv_seq=-3), "kv_seq must be at least 1, got -3"),
    (dict(batch=0), "batch must be at least 1"),
    (dict(heads=0), "heads must be at least 1"),
    (dict(head_dim=-1), "head_dim must be at least 1"),
    (dict(kv_heads=0), "kv_heads must be at least 1"),
    (dict(d_model=0), "d_model must be at least 1"),
    (dict(window=0), "window must be at least 1, got 0"),
    (dict(block=0), "block must be at least 1"),
    (dict(top_k=0), "top_k must be at least 1"),
    (dict(features=0), "features must be at least 1"),
    (dict(rank=0), "rank must be at least 1"),
    (dict(n_global=-1), "n_global must be a whole number >= 0, got -1"),
    (dict(n_random=-2), "n_random must be a whole number >= 0"),
    (dict(seed=-1), "seed must be a whole number >= 0"),
    (dict(dtype="float8"), "unknown dtype 'float8': choose one of float64, float32, bfloat16, float16"),
    (dict(causal_align="middle"), "unknown causal_align 'middle': choose bottom_right or top_left"),
    (dict(device="tpu"), "unknown device 'tpu'"),
    (dict(causal="yes"), "causal must be true or false, got 'yes'"),
    (dict(causal=1), "causal must be true or false, got 1"),
    # bools are ints in Python: True must not pass as a size of 1
    (dict(seq=True), "seq must be a whole number, got True"),
    (dict(window=False), "window must be a whole number, got False"),
    (dict(seq=64.0), "seq must be a whole number, got 64.0"),
    (dict(head_dim="64"), "head_dim must be a whole number, got '64'"),
    (dict(n_global=1.5), "n_global must be a whole number >= 0, got 1.5"),
    (dict(n_random=True), "n_random must be a whole number >= 0, got True"),
])
def test_bad_specs_say_what_to_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        AttentionSpec(**changes)


def test_cuda_device_names_pass_validation_without_a_gpu():
    # whether a GPU exists is decided when inputs are made, not when the spec is written
    assert AttentionSpec(device="cuda:1").device == "cuda:1"
    assert AttentionSpec(device="auto").device == "auto"


def test_variant_parameters_equal_to_their_defaults_are_not_kept():
    # so a spec given a default explicitly equals one that left it out, and hashes alike
    assert AttentionSpec(window=256) == AttentionSpec() and AttentionSpec(window=256).params == ()
    spec = AttentionSpec(window=8, top_k=4)
    assert spec.params == (("top_k", 4), ("window", 8)) and spec.window == 8
    assert spec.with_(window=256) == AttentionSpec(top_k=4)
    assert spec.to_dict()["block"] == 64, "a flat dict carries every parameter's value"


def test_an_unknown_variant_parameter_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown spec parameter 'windw': the variants take .*window"):
        AttentionSpec(windw=8)


def test_from_dict_ignores_what_no_variant_declares_and_reads_nested_params():
    spec = AttentionSpec.from_dict({"seq": 64, "window": 8, "gone_variant_knob": 3})
    assert spec == AttentionSpec(seq=64, window=8)
    assert AttentionSpec.from_dict({"seq": 64, "params": {"window": 8}}) == spec


def test_a_device_that_is_not_text_is_refused_in_one_line():
    # found by tests/test_fuzz.py: {"device": 0} raised AttributeError (0 has no startswith)
    with pytest.raises(ValueError, match="unknown device 0: choose cpu, cuda or auto"):
        AttentionSpec.from_dict({"device": 0})


def test_kv_heads_that_do_not_divide_a_huge_head_count_answer_at_once():
    # found by tests/test_fuzz.py: listing the divisors of 10^30 heads never finished
    with pytest.raises(ValueError, match=r"must be a multiple of kv_heads \(7\): choose a divisor"):
        AttentionSpec(heads=10**30, kv_heads=7)
