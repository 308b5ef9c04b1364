"""Fuzzing every entry point with hostile input: a result, or one line that says what to change.

Hypothesis draws the inputs (tests/fuzz_inputs.py) with a fixed seed (`derandomize`) and a
bounded number of examples, so `make test` is fast and gives the same verdict on every run;
`python -m bench.fuzz` is the longer run of the same strategies.
"""
import json
import math
import sqlite3

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from attn import calibrate, memory, variants
from attn import params as declared_params
from attn.cost import attention_cost
from attn.models import load_model
from attn.models.plan import parse_plan
from attn.regimes import MODES
from attn.runs import RunStore, RunStoreError
from attn.runs.maps_blob import DTYPES, decode_maps
from attn.spec import AttentionSpec
from tests import fuzz_inputs as F
from tests.conftest import open_app
from ui.sidebar import _fitted
from ui.state import read_url_value, spec_from_query, spec_keys


def fuzz(examples: int) -> settings:
    """The suite's settings: the same examples on every run, no time limit per example (a
    2-core machine shared with other work is slow at random), and no example database."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def refused_in_one_line(call, *args, **kwargs):
    """call(*args) or None when it raised a ValueError whose message is one line."""
    try:
        return call(*args, **kwargs)
    except ValueError as error:
        assert F.one_line(error), repr(str(error))
        return None


# -- the library: specs and their costs ----------------------------------------------------------

@fuzz(300)
@given(F.spec_dicts())
def test_a_spec_from_any_dict_is_a_spec_or_one_line(data):
    spec = refused_in_one_line(AttentionSpec.from_dict, data)
    if spec is not None:  # what it keeps is valid: the spec round-trips through its dict
        assert AttentionSpec.from_dict(spec.to_dict()) == spec
    refused_in_one_line(lambda: AttentionSpec(**data))


valid_sizes = st.fixed_dictionaries(
    {"batch": st.integers(1, F.HUGE), "seq": st.integers(1, F.HUGE), "heads": st.integers(1, 4096),
     "head_dim": st.integers(1, F.HUGE)},
    optional={"kv_seq": st.integers(1, F.HUGE), "causal": st.booleans(),
              "causal_align": st.sampled_from(("bottom_right", "top_left")),
              **{name: F.param_value(p) for name, p in declared_params.declared().items()}})


@fuzz(60)
@given(valid_sizes, st.data())
def test_every_cost_of_any_size_is_whole_and_finite_or_one_line(sizes, data):
    sizes["kv_heads"] = data.draw(st.sampled_from([d for d in (1, 2, 4, sizes["heads"]) if sizes["heads"] % d == 0]))
    spec = refused_in_one_line(AttentionSpec.from_dict, sizes)
    assume(spec is not None)
    for name in variants.names():
        for mode in MODES:
            cost = refused_in_one_line(attention_cost, spec, name, mode)
            if cost is None:
                continue
            assert type(cost.pairs) is int and type(cost.full_pairs) is int, (name, mode)
            for key, value in cost.to_dict().items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                assert value >= 0, (name, mode, key, value)
                assert isinstance(value, int) or math.isfinite(value), (name, mode, key, value)


# -- the command line ------------------------------------------------------------------------------

def assert_result_or_one_line(argv):
    outcome = F.call_cli(argv)
    assert outcome.kind in ("result", "error"), (argv, outcome.detail)


@fuzz(150)
@given(F.cost_argv())
def test_cost_on_any_command_line(argv):
    assert_result_or_one_line(argv)


@fuzz(60)
@given(st.one_of(F.junk_argv(), F.runs_argv()))
def test_any_words_on_the_command_line(argv):
    assert_result_or_one_line(argv)


@pytest.mark.slow
@fuzz(25)
@given(st.one_of(F.profile_argv(), F.maps_argv(), F.sweep_argv()))
def test_profile_maps_and_sweep_on_tiny_hostile_command_lines(argv):
    assert_result_or_one_line(argv)


# -- plans ------------------------------------------------------------------------------------------

@fuzz(300)
@given(F.plan_texts, st.integers(1, 48), st.one_of(st.none(), F.hostile_ints),
       st.one_of(st.none(), F.hostile_text, st.sampled_from(("softmax", "relu"))),
       st.sampled_from((None, 1, 6, 12, 32)))
def test_a_plan_from_any_text_is_a_plan_or_one_line(text, layers, kv_heads, activation, heads):
    plan = refused_in_one_line(parse_plan, text, layers, kv_heads, activation, heads=heads)
    if plan is not None:
        assert len(plan.layers) == layers
        assert parse_plan(str(plan), layers) == plan  # its compact form parses back to it


# -- files the user gives attn -----------------------------------------------------------------------

@fuzz(80)
@given(F.mostly(st.dictionaries(st.just(calibrate.device_key("cpu")), F.mostly(F.calibration_entries, F.json_values),
                                 min_size=1).map(lambda v: json.dumps(v).encode()),
                st.one_of(F.file_bytes, F.json_values.map(lambda v: json.dumps(v).encode()))))
def test_a_calibration_file_with_anything_in_it(tmp_path_factory, contents):
    home = tmp_path_factory.mktemp("home")
    (home / "calibration.json").write_bytes(contents)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTN_HOME", str(home))
        cal = calibrate.cached("cpu")
    if cal is not None:  # what a profile divides by: positive and finite
        assert math.isfinite(cal.bandwidth_gbps) and cal.bandwidth_gbps > 0
        assert all(math.isfinite(r) and r > 0 for r in cal.matmul_tflops.values())
        assert cal.ridge_intensity("float32") is None or cal.ridge_intensity("float32") > 0


@fuzz(40)
@given(F.file_bytes)
def test_a_run_store_file_with_anything_in_it(tmp_path_factory, contents):
    path = tmp_path_factory.mktemp("store") / "runs.sqlite"
    path.write_bytes(contents)
    try:
        store = RunStore(path)
        store.list()
        store.count()
    except RunStoreError as error:
        assert F.one_line(error)


@fuzz(60)
@given(st.sampled_from(("spec", "results", "environment", "tags")),
       st.one_of(F.hostile_text, F.json_values.map(json.dumps)), st.sampled_from(("json", "csv")))
def test_a_saved_run_with_anything_in_a_column(tmp_path_factory, column, text, fmt):
    store = RunStore(tmp_path_factory.mktemp("store") / "runs.sqlite")
    run_id = store.save("profile", AttentionSpec(seq=8).to_dict(), {"latency_ms": 1.0}, variant="sdpa")
    with sqlite3.connect(store.path) as db:
        db.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (text, run_id))
    for read in (lambda: store.list(), lambda: store.get(run_id), lambda: store.export(run_id, fmt=fmt)):
        try:
            read()
        except RunStoreError as error:
            assert F.one_line(error)


def _blob(header, tail: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return __import__("zlib").compress(len(text).to_bytes(4, "little") + text + tail)


@fuzz(120)
@given(st.one_of(F.file_bytes, F.json_values.map(_blob),
                 st.builds(_blob, F.maps_headers, st.binary(max_size=64))))
def test_a_maps_blob_with_anything_in_it(blob):
    try:
        maps = decode_maps(blob)
    except RunStoreError as error:
        assert F.one_line(error)
    else:  # every array it gave back is one encode_maps could have written, and writable
        for array in _arrays_in(maps):
            assert array.dtype.newbyteorder("<").str in DTYPES and array.flags.writeable, array.dtype


def _arrays_in(value):
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [array for item in value for array in _arrays_in(item)]
    return [value] if hasattr(value, "dtype") else []


@fuzz(60)
@given(F.model_config_files)
def test_a_model_directory_with_anything_in_its_config(tmp_path_factory, contents):
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("model")
    (directory / "config.json").write_bytes(contents)
    save_file({}, str(directory / "model.safetensors"))  # no tensors: transformers builds what the config says
    with pytest.MonkeyPatch.context() as mp, F.time_limit(60):
        mp.setattr(memory, "free_bytes", lambda device: 256 * 2**20)  # nothing big may be built
        loaded = refused_in_one_line(load_model, str(directory))
    if loaded is not None:  # the shape every page reads is there, and whole
        config = loaded.config
        assert 1 <= config.num_hidden_layers <= 1024 and config.hidden_size >= 1
        heads = config.num_attention_heads
        assert heads % (getattr(config, "num_key_value_heads", None) or heads) == 0


# -- links: the URL's query string ------------------------------------------------------------------

@fuzz(200)
@given(st.dictionaries(st.sampled_from([*spec_keys(), "no_such_key"]),
                       F.mostly(F.hostile_values.map(str), F.hostile_text, odds=1), max_size=8))
def test_a_link_with_anything_in_it_fills_the_spec_editor(query):
    values = spec_from_query(query)  # what the sidebar starts from
    notes: list[str] = []
    for name, lo, hi in (("batch", 1, 4096), ("seq", 1, 1 << 20), ("heads", 1, 512), ("head_dim", 1, 1024),
                         ("seed", 0, 2**31 - 1)):
        assert lo <= _fitted(values, name, lo, hi, notes) <= hi
    for name, param in declared_params.declared().items():
        value = values.get(name, param.default)
        assert not isinstance(value, float) or math.isfinite(value), (name, value)  # a field can show it
        if param.lo is not None and param.hi is not None:
            assert param.lo <= _fitted({name: value}, name, param.lo, param.hi, notes) <= param.hi
    assert all(F.one_line(ValueError(note)) for note in notes)
    refused_in_one_line(lambda: AttentionSpec(**{k: v for k, v in values.items()}))


@fuzz(300)
@given(st.one_of(st.none(), F.hostile_text, F.hostile_values.map(str)),
       st.sampled_from([(0, None, None, None), (0, 0, 7, None), (1.5, 0.1, 1e5, None), (256, None, None, (64, 256)),
                        ("random", None, None, ("random", "model")), (True, None, None, None), ("x", None, None, None)]))
def test_a_page_value_from_a_link_fits_its_widget(raw, how):
    default, lo, hi, choices = how
    value, note = read_url_value(raw, default, lo, hi, choices)
    assert type(value) is type(default)
    assert not isinstance(value, float) or math.isfinite(value)
    assert lo is None or lo <= value <= hi
    assert choices is None or value in choices
    assert note is None or F.one_line(ValueError(note))


HOSTILE_LINKS = [("views/playground.py", {"head": "-5", "cells": "7", "src": "evil", "layer": "99"}),
                 ("views/playground.py", {"seq": "1e999", "heads": "-1", "sigmoid_bias": "inf", "seed": "9" * 30,
                                          "dtype": "evil", "block": "0", "device": "0"}),
                 ("views/scaling.py", {"lo": "99", "hi": "-3", "axis": "evil", "mode": "evil"}),
                 ("views/economics.py", {"gpu_price": "nan", "budget_gib": "-1", "layers": "0", "context": "1e999"})]


@pytest.mark.slow
def test_hostile_links_are_fitted_with_a_warning_not_an_exception():
    # found by fuzzing by hand (issue #16): each of these raised in the page (a widget refused
    # its value), and Streamlit showed "This app has encountered an error"
    for page, params in HOSTILE_LINKS:
        at = open_app(page, **params)
        assert not at.exception, (page, params, [e.value for e in at.exception])
        assert at.warning, (page, params)
