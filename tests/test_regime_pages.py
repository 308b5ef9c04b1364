"""The Playground, Scaling and Roofline pages in each regime (forward, train, decode) under
Streamlit's AppTest: what each shows, a variant that cannot run a regime, a bad decode step."""
import json
import time

import pytest

from tests.conftest import open_app

pytestmark = pytest.mark.usefixtures("in_process_jobs")
MODES = ["forward", "train", "decode"]
ANALYTIC = {"forward": "pairs, % of exact", "train": "est. saved", "decode": "bytes read"}
MEASURED = {"forward": ["latency (median)", "kernel error"],
            "train": ["forward (median)", "backward (median)", "saved memory", "gradient error"],
            "decode": ["per-token latency", "% of floor speed", "achieved bandwidth"]}


def _labels(at) -> list[str]:
    return [m.label for m in at.metric]


def _figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _sweep(at, timeout_s: float = 240) -> dict:
    """Start the sweep at the shortest budget a point allows, and rerun until its result lands
    (the page's fragment polls the job), resting between reruns: the worker needs the cores."""
    at.number_input(key="sc_budget").set_value(0.05).run()
    at.button(key="sc_run").click().run()
    deadline = time.monotonic() + timeout_s
    while "sweep_result" not in at.session_state and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    return at.session_state["sweep_result"]


@pytest.mark.parametrize("mode", MODES)
def test_the_playground_opens_in_each_regime_with_its_own_cards(mode):
    at = open_app("views/playground.py", mode=mode, seq="64", context="256", variants="sdpa,dense")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.radio(key="pg_mode").value == mode
    assert _labels(at).count(ANALYTIC[mode]) == 2
    seq_field = [w for w in at.number_input if w.key == "w_seq"]
    context_field = [w for w in at.number_input if w.key in ("w_context", "w_new_tokens")]
    assert (bool(seq_field), len(context_field)) == ((False, 2) if mode == "decode" else (True, 0))


@pytest.mark.parametrize("mode", ["train", "decode"])
def test_a_profile_in_a_regime_fills_that_regimes_cards(mode):
    at = open_app("views/playground.py", mode=mode, seq="64", context="256", variants="sdpa")
    at.button(key="pg_profile").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    for label in MEASURED[mode]:
        assert label in _labels(at)
    assert [m.value for m in at.metric if m.label == MEASURED[mode][1]] != ["—"]


def test_decode_draws_the_new_tokens_over_the_cache_as_a_strip():
    at = open_app("views/playground.py", mode="decode", context="512", new_tokens="2", variants="sdpa")
    assert not at.exception, at.exception
    strips = [f for f in _figures(at) if f["data"][0].get("type") == "heatmap"]
    assert strips, "a weights strip and a mask strip"
    for fig in strips:
        assert fig["data"][0]["y"] == ["510", "511"]  # the two new tokens, by place in the cache
        assert fig["layout"]["height"] < 420
    assert dict(at.query_params)["mode"] == "decode"
    assert dict(at.query_params)["new_tokens"] == "2"


def test_linformer_in_decode_says_why_and_the_page_keeps_working():
    at = open_app("views/playground.py", mode="decode", context="256", variants="sdpa,linformer")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Cannot run in decode" in w.value and "no cache to decode against" in w.value
               for w in at.warning), [w.value for w in at.warning]
    at.button(key="pg_profile").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert _labels(at).count("per-token latency") == 1, "sdpa is profiled, linformer is not tried"


def test_more_new_tokens_than_context_is_one_line_and_no_exception():
    at = open_app("views/playground.py", mode="decode", context="8", new_tokens="16")
    assert not at.exception, at.exception
    lines = [e.value for e in at.error]
    assert any("new_tokens (16) must be at most context (8)" in line for line in lines), lines
    assert all("\n" not in line for line in lines)
    at.number_input(key="w_new_tokens").set_value(4).run()  # fixed in the sidebar: the page is back
    assert not at.exception and not at.error
    assert _labels(at).count("bytes read") == 2


def test_the_regime_is_kept_across_pages_and_a_bad_one_from_a_link_is_a_note():
    at = open_app("views/playground.py", mode="sideways", seq="64")
    assert not at.exception, at.exception
    assert any("mode 'sideways' from the link" in w.value for w in at.warning)
    at.radio(key="pg_mode").set_value("decode").run()
    assert [w for w in at.number_input if w.key == "w_context"], "the sidebar follows the selector"
    at.switch_page("views/scaling.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="sc_mode").value == "decode"
    at.switch_page("views/economics.py").run()
    assert not [w for w in at.number_input if w.key == "w_context"], "a page without regimes: forward"


@pytest.mark.parametrize("mode", MODES)
def test_the_scaling_page_opens_in_each_regime(mode):
    at = open_app("views/scaling.py", mode=mode, seq="32", context="256")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    axes = at.selectbox(key=f"sc_axis_{mode}").options
    assert ("context" in axes, "seq" in axes) == ((True, False) if mode == "decode" else (False, True))


def test_a_train_sweep_shows_saved_memory_growing_faster_for_eager_attention():
    # on flash: on auto, a CPU may find math the fastest at short lengths, and math keeps the weights
    at = open_app("views/scaling.py", mode="train", seq="32", variants="sdpa,dense", lo="5", hi="6",
                  backend="flash")
    result = _sweep(at)
    assert result["mode"] == "train"
    assert all(p["status"] == "ok" and p["saved_bytes"] for p in result["points"])
    assert "saved memory" in [t.label for t in at.tabs]
    exponents = {n: fits["saved_bytes"]["exponent"] for n, fits in result["fits"].items()}
    assert exponents == pytest.approx({"dense": 2.0, "sdpa": 1.0}, abs=0.05)  # S² weights; a line


def test_a_decode_sweep_over_context_draws_the_bandwidth_floor_and_leaves_linformer_out():
    at = open_app("views/scaling.py", mode="decode", context="64", variants="sdpa,linformer",
                  lo="6", hi="7")
    assert any("no cache to decode against" in w.value for w in at.warning)
    result = _sweep(at)
    assert (result["mode"], result["axis"], result["variants"]) == ("decode", "context", ["sdpa"])
    assert [p["x"] for p in result["points"]] == [64, 128]
    assert all(p["floor_ms"] and p["bytes_read"] for p in result["points"])
    floors = [t for f in _figures(at) for t in f["data"] if t.get("name") == "sdpa floor"]
    assert floors and floors[0]["line"]["dash"] == "dash"


def test_a_decode_sweep_whose_context_cannot_hold_the_new_tokens_says_so():
    at = open_app("views/scaling.py", mode="decode", context="512", new_tokens="100", lo="5", hi="8")
    assert not at.exception, at.exception
    assert any("must hold the 100 new tokens" in e.value for e in at.error)


@pytest.mark.parametrize("mode", MODES)
def test_the_roofline_places_a_saved_run_of_each_regime(mode):
    from attn.runs import RunStore

    spec = {"seq": 1 if mode == "decode" else 64, "dtype": "float32", "device": "cpu"}
    result = {"achieved_tflops": 0.01, "latency_ms": 1.0, "flops": 1000,
              "cost": {"arithmetic_intensity": 12.0}, "mode": mode}
    if mode == "decode":
        result["bytes_read"] = 4000
    env = {"device": "cpu", "device_kind": "cpu"}
    store = RunStore()
    store.save("profile", spec, result, variant="sdpa", environment=env)
    old = {k: v for k, v in result.items() if k not in ("mode", "bytes_read")}  # saved before the regimes
    store.save("profile", spec, old, variant="dense", environment=env)
    at = open_app("views/roofline.py")
    assert not at.exception, at.exception
    points = [t for t in _figures(at)[0]["data"] if t.get("mode") == "markers"]
    symbols = {t["name"]: (t["marker"]["symbol"], t["x"]) for t in points}
    symbol = {"forward": "circle", "train": "diamond", "decode": "triangle-up"}[mode]
    sdpa = "sdpa" if mode == "forward" else f"sdpa · {mode}"
    assert symbols[sdpa] == (symbol, [0.25 if mode == "decode" else 12.0])
    assert symbols["dense" if mode == "forward" else "dense · forward"][0] == "circle"
