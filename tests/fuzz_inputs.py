"""Hostile inputs for the fuzz suite (tests/test_fuzz.py) and its longer run (bench/fuzz.py),
and the one way both judge a call: a result, or one line that says what to change.

The strategies mix plausible values (so that many specs are valid and reach the cost model or
the kernels) with hostile ones: sizes up to 10^30, zero and negatives, NaN and infinities, the
wrong type, text where a number goes, names no variant declares. Sizes that would actually run
(profile, sweep, maps) are kept tiny or invalid, never large and valid, so that a call stays
fast; `cost` is closed-form and takes any size.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import strategies as st

from attn import params as declared_params
from attn import variants
from attn.regimes import MODES
from attn.spec import DTYPE_BYTES, INT_FIELDS

HUGE = 10**30
EDGE_INTS = (0, -1, 1, 2, 3, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, HUGE, -HUGE)
EDGE_TEXT = ("", " ", "nan", "-nan", "inf", "-inf", "1e999", "1e3", "0x10", "1_000", "+5", "٣", "1.5",
             "-0", "9" * 30, "None", "true", "--json", "\x00", "a,b", ",", "1,,2", "é")
VARIANT_NAMES = tuple(variants.names())

# -- values -----------------------------------------------------------------------------------

def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 3) -> st.SearchStrategy[Any]:
    """`good` `odds` times as often as `bad`: a call with many flags still gets past validation
    often enough to reach the code behind it."""
    return st.sampled_from([good] * odds + [bad]).flatmap(lambda chosen: chosen)


hostile_ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-HUGE, HUGE), st.integers(-3, 300))
hostile_floats = st.floats(allow_nan=True, allow_infinity=True)
hostile_text = st.one_of(st.sampled_from(EDGE_TEXT), st.text(max_size=8))
hostile_values = st.one_of(hostile_ints, hostile_floats, st.booleans(), st.none(), hostile_text,
                           st.lists(st.integers(0, 9), max_size=2))
small_sizes = st.integers(1, 64)


def size_value() -> st.SearchStrategy[Any]:
    """A spec size: mostly whole numbers from 1 to 10^30, sometimes anything at all."""
    return st.one_of(small_sizes, st.integers(1, HUGE), hostile_ints, hostile_values)


def param_value(param: declared_params.Param) -> st.SearchStrategy[Any]:
    """A variant parameter's value: within its declaration, at its edges, or anything."""
    if param.choices:
        good = st.sampled_from(param.choices)
    elif param.kind is bool:
        good = st.booleans()
    elif param.kind is float:
        good = st.floats(-1e3, 1e3)
    else:
        good = st.integers(param.lo if param.lo is not None else -HUGE, param.hi if param.hi is not None else HUGE)
    edges = [x for x in (param.lo, param.hi) if x is not None]
    edges += [x - 1 for x in edges if param.lo is not None and x == param.lo] + [x + 1 for x in edges]
    return mostly(good, st.one_of(st.sampled_from(edges or [param.default]), hostile_values))


def spec_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """What `AttentionSpec.from_dict` may be given: a saved run's spec, a link, a hand edit."""
    shared: dict[str, st.SearchStrategy[Any]] = {name: size_value() for name in INT_FIELDS}
    shared.update(dtype=st.one_of(st.sampled_from(tuple(DTYPE_BYTES)), hostile_values),
                  causal=st.one_of(st.booleans(), hostile_values),
                  causal_align=st.one_of(st.sampled_from(("bottom_right", "top_left")), hostile_values),
                  device=st.one_of(st.sampled_from(("cpu", "cuda", "auto", "cuda:1")), hostile_values),
                  seed=st.one_of(st.integers(0, 2**63 - 1), hostile_ints, hostile_values))
    for name, param in declared_params.declared().items():
        shared[name] = param_value(param)
    shared["no_such_parameter"] = hostile_values
    return st.fixed_dictionaries({}, optional=shared)


# -- command lines ------------------------------------------------------------------------------

def flag_text(value: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return mostly(value.map(str), hostile_text)


# the flags of a spec: (flag, its values when the command computes nothing big, when it runs)
_SIZE_FLAGS = ("--batch", "--seq", "--heads", "--head-dim", "--kv-seq", "--kv-heads", "--d-model")
_ANY_SIZE = flag_text(st.one_of(small_sizes, st.integers(1, HUGE), hostile_ints))
# values a kernel may run at: tiny, or refused before anything runs (zero, negative, not a number)
_RUNNABLE_SIZE = mostly(st.integers(1, 8).map(str), st.one_of(st.integers(-HUGE, 0).map(str), st.sampled_from(
    ("", "nan", "1.5", "x", "1e3", "0x10"))))
# a command that runs starts from tiny sizes (its defaults are 512 tokens, 8 heads of 64)
TINY = ["--batch", "1", "--seq", "8", "--heads", "2", "--head-dim", "8"]


def _param_flags(runs: bool) -> list[tuple[str, st.SearchStrategy[str]]]:
    flags = []
    for name, param in declared_params.declared().items():
        value = param_value(param)
        if runs and param.kind is int:  # a kernel would run at it: keep it small (or invalid)
            value = mostly(st.integers(param.lo or 0, min(param.hi or 16, 16)), hostile_text)
        flags.append(("--" + name.replace("_", "-"), flag_text(value)))
    return flags


@st.composite
def _flags(draw: Callable, pairs: list[tuple[str, st.SearchStrategy[str]]], at_most: int) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(pairs), max_size=at_most, unique_by=lambda p: p[0]))
    argv: list[str] = []
    for flag, value in chosen:
        argv += [flag, draw(value)]
    return argv


def _variant() -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(VARIANT_NAMES), hostile_text, odds=6)


def _common(runs: bool) -> list[tuple[str, st.SearchStrategy[str]]]:
    size = _RUNNABLE_SIZE if runs else _ANY_SIZE
    return [*((flag, size) for flag in _SIZE_FLAGS), *_param_flags(runs),
            ("--dtype", st.one_of(st.sampled_from(tuple(DTYPE_BYTES)), hostile_text)),
            ("--causal-align", st.one_of(st.sampled_from(("bottom_right", "top_left")), hostile_text)),
            ("--seed", flag_text(st.one_of(st.integers(0, 2**64), hostile_ints))),
            ("--device", st.sampled_from(("cpu", "cuda", "auto", "cuda:3", "tpu", "")))]


def _mode_flags(runs: bool) -> list[tuple[str, st.SearchStrategy[str]]]:
    tokens = _RUNNABLE_SIZE if runs else _ANY_SIZE
    return [("--mode", st.one_of(st.sampled_from(MODES), hostile_text)), ("--context", tokens),
            ("--new-tokens", tokens)]


_BUDGETS = mostly(st.sampled_from(("0", "0.0", "1e-9", "0.001")),
                  st.one_of(st.sampled_from(("nan", "inf", "-inf", "-1", "x", "")), st.floats(-1, 0).map(str)))
_TEMPERATURE = ("--temperature", flag_text(mostly(st.floats(0.01, 10), hostile_floats)))
_SWITCHES = st.lists(st.sampled_from(("--causal", "--json")), unique=True)


@st.composite
def cost_argv(draw: Callable) -> list[str]:
    """`attn cost` at any size: it is closed-form."""
    return ["cost", "--variant", draw(_variant()), *draw(_flags(_common(False) + _mode_flags(False), 9)),
            *draw(_SWITCHES)]


@st.composite
def profile_argv(draw: Callable) -> list[str]:
    """`attn profile` on tiny sizes with a budget of (about) nothing, or values refused at once."""
    return ["profile", "--variant", draw(_variant()), "--budget", draw(_BUDGETS), "--device", "cpu", *TINY,
            *draw(_flags(_common(True) + _mode_flags(True) + [_TEMPERATURE], 6)), *draw(_SWITCHES)]


@st.composite
def sweep_argv(draw: Callable) -> list[str]:
    """`attn sweep` of tiny sizes (a list of them), or values refused at once."""
    names = draw(st.lists(_variant(), min_size=1, max_size=2))
    size_list = st.lists(st.integers(1, 8), min_size=1, max_size=2).map(lambda xs: ",".join(map(str, xs)))
    listed = st.one_of(size_list, st.sampled_from(("", ",", "0", "-4", "x", "1,,2", "nan")))
    flags = [flag for flag in _common(True) if flag[0] != "--seq"] + [
        ("--seq", listed), ("--context", listed), ("--values", listed),
        ("--new-tokens", _RUNNABLE_SIZE),
        ("--mode", st.one_of(st.sampled_from(MODES), hostile_text)),
        ("--axis", st.one_of(st.sampled_from(("seq", "batch", "heads", "head_dim", "context")), hostile_text))]
    return ["sweep", "--variants", ",".join(names), "--budget", draw(_BUDGETS), "--device", "cpu", *TINY,
            *draw(_flags(flags, 6)), *draw(_SWITCHES)]


@st.composite
def maps_argv(draw: Callable) -> list[str]:
    """`attn maps` on tiny sizes (its compute time at huge sizes has no bound yet: issue #16's
    owner of maps bounds it), or values refused at once."""
    flags = _common(True) + [("--head", flag_text(hostile_ints)),
                             ("--max-size", flag_text(st.one_of(st.integers(1, 64), hostile_ints))),
                             ("--reduce", st.one_of(st.sampled_from(("mean", "max")), hostile_text)), _TEMPERATURE]
    return ["maps", "--variant", draw(_variant()), "--device", "cpu", *TINY, *draw(_flags(flags, 6)),
            *draw(_SWITCHES)]


@st.composite
def runs_argv(draw: Callable) -> list[str]:
    """`attn runs` with any ids, kinds, modes, limits and formats (never --out: it writes a file)."""
    ids = draw(st.lists(flag_text(st.one_of(st.integers(-3, 5), hostile_ints)), max_size=3))
    flags = [("--kind", st.one_of(st.sampled_from(("profile", "sweep", "maps", "plan")), hostile_text)),
             ("--mode", st.one_of(st.sampled_from(MODES), hostile_text)),
             ("--limit", flag_text(hostile_ints)),
             ("--format", st.one_of(st.sampled_from(("json", "csv", "html")), hostile_text))]
    action = draw(mostly(st.sampled_from(("list", "show", "export", "delete")), hostile_text))
    return ["runs", action, *ids, *draw(_flags(flags, 3)), *draw(_SWITCHES.map(lambda s: [x for x in s
                                                                                          if x != "--causal"]))]


@st.composite
def junk_argv(draw: Callable) -> list[str]:
    """Any words at all, led by a command name or not."""
    head = draw(st.sampled_from(("cost", "profile", "sweep", "maps", "runs", "variants", "plan", "model",
                                 "x", "--help-me", "")))
    return [head, *draw(st.lists(hostile_text, max_size=4))]


# -- plans ----------------------------------------------------------------------------------------

_LAYERS = st.one_of(st.integers(-2, 8).map(str), st.sampled_from(("all", "*", "0-5", "5-0", "1-", "-1", "a")),
                    st.tuples(st.integers(-1, 8), st.integers(-1, 8)).map(lambda t: f"{t[0]}-{t[1]}"),
                    hostile_text)
_KIND = st.one_of(st.sampled_from(("full", "sdpa", "dense", "eager", "sliding_window", "window",
                                   "block_sparse", "kv")), hostile_text)
_PARAM = st.one_of(st.integers(-3, 4096).map(str), st.sampled_from(tuple(map(str, EDGE_INTS))), hostile_text)
_ACTIVATION = st.one_of(st.sampled_from(("softmax", "sigmoid", "relu", "SIGMOID ")), hostile_text)


@st.composite
def plan_entry(draw: Callable) -> str:
    fields = [draw(_LAYERS), draw(_KIND)]
    fields += draw(st.lists(st.one_of(_PARAM, _ACTIVATION), max_size=3))
    return ":".join(fields)


plan_texts = st.one_of(st.lists(plan_entry(), max_size=4).map(",".join), hostile_text)


# -- files ----------------------------------------------------------------------------------------

json_values = st.recursive(st.one_of(st.none(), st.booleans(), hostile_ints, hostile_floats, hostile_text),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(hostile_text, inner, max_size=3)),
                           max_leaves=8)
_RATE = mostly(st.floats(0.01, 1e4), st.one_of(st.sampled_from((0, -1, 0.0, -0.0, 1e-320, True, math.nan, math.inf)),
                                               hostile_values), odds=2)
calibration_entries = st.fixed_dictionaries(
    {"device": hostile_text, "torch": hostile_text, "bandwidth_gbps": _RATE,
     "matmul_tflops": mostly(st.dictionaries(st.sampled_from(("float32", "bfloat16", "float16")), _RATE,
                                             max_size=3), hostile_values)},
    optional={"sizes": json_values, "measured_at": json_values, "extra": json_values})
file_bytes = st.one_of(st.binary(max_size=64), st.sampled_from((b"", b"{", b"[]", b"null", b"\xff\xfe",
                                                                b"SQLite format 3\x00")))

# a maps blob's header (attn.runs.maps_blob): a tree that points at arrays, their dtypes and shapes
maps_headers = st.fixed_dictionaries({
    "tree": st.one_of(json_values, st.dictionaries(hostile_text, st.fixed_dictionaries(
        {"$array": st.one_of(st.integers(-2, 3), hostile_values)}), max_size=2)),
    "arrays": st.lists(st.fixed_dictionaries({
        "dtype": st.one_of(st.sampled_from(("<f4", "<f2", "|u1", "|b1", "<i8", "|O", ">f4", "<U4")), hostile_text),
        "shape": st.one_of(st.lists(st.one_of(st.integers(0, 4), hostile_ints), max_size=3), hostile_values)}),
        max_size=3)})

# a model directory's config.json: a tiny model of one family, a few of its values made hostile
TINY_MODEL_CONFIGS = (
    {"model_type": "bert", "hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1,
     "intermediate_size": 32, "vocab_size": 64, "max_position_embeddings": 32},
    {"model_type": "gpt2", "n_embd": 16, "n_head": 2, "n_layer": 1, "vocab_size": 64, "n_positions": 32},
    {"model_type": "llama", "hidden_size": 16, "num_attention_heads": 4, "num_key_value_heads": 2,
     "num_hidden_layers": 1, "intermediate_size": 32, "vocab_size": 64, "max_position_embeddings": 32},
)
_CONFIG_KEYS = ("head_dim", "layer_norm_eps", "dtype", "sliding_window", "pad_token_id", "text_config")
_CONFIG_VALUE = st.one_of(hostile_values, st.integers(1, 64), st.sampled_from(("bert", "float64", "int8")),
                          json_values)


@st.composite
def model_configs(draw: Callable) -> dict[str, Any]:
    config = dict(draw(st.sampled_from(TINY_MODEL_CONFIGS)))
    for key in draw(st.lists(st.sampled_from((*config, *_CONFIG_KEYS)), unique=True, min_size=1, max_size=3)):
        if key in config and draw(st.booleans()):
            del config[key]  # the family's default, or nothing
        else:
            config[key] = draw(_CONFIG_VALUE)
    return config


model_config_files = mostly(model_configs().map(lambda c: json.dumps(c).encode()),
                            st.one_of(file_bytes, json_values.map(lambda v: json.dumps(v).encode())))


# -- judging a call -------------------------------------------------------------------------------

class Hang(BaseException):
    """A call ran past its time limit. BaseException, so no `except Exception` swallows it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise Hang in this (the main) thread after `seconds`; a Python loop or a torch call is
    interrupted when it next returns to the interpreter."""
    def ring(signum, frame):
        raise Hang(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    """One CLI call: `result` (exit 0), `error` (exit 2 with one line on stderr) or `other`
    (anything else: an exception, a traceback, a hang, several lines), with why."""

    argv: list[str]
    kind: str
    seconds: float
    detail: str = ""


def call_cli(argv: list[str], limit_s: float = 30.0) -> Outcome:
    """attn's CLI in this process, its output captured, judged by the contract."""
    from attn.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with time_limit(limit_s), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except Hang as hang:
        return Outcome(argv, "other", time.perf_counter() - start, f"hang: {hang}")
    except BaseException as error:  # noqa: BLE001 (SystemExit and KeyboardInterrupt are findings too)
        return Outcome(argv, "other", time.perf_counter() - start, f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - start
    return judge_exit(argv, code, err.getvalue(), seconds)


def judge_exit(argv: list[str], code: int, stderr: str, seconds: float) -> Outcome:
    if code == 0:
        return Outcome(argv, "result", seconds)
    lines = stderr.strip().splitlines()
    if code == 2 and len(lines) == 1 and lines[0].startswith("attn: error: ") and len(lines[0]) > 13:
        return Outcome(argv, "error", seconds, lines[0])
    return Outcome(argv, "other", seconds, f"exit {code}, stderr {stderr!r}")


def one_line(error: BaseException) -> bool:
    """A ValueError's message is one line that says something."""
    text = str(error)
    return bool(text.strip()) and "\n" not in text
