"""Every page under Streamlit's AppTest: the default run raises nothing, widgets rerun cleanly,
and a bad spec shows an error element instead of an exception."""
import pytest

from tests.conftest import open_app

pytestmark = pytest.mark.usefixtures("in_process_jobs")
PAGES = ["views/overview.py", "views/playground.py", "views/scaling.py", "views/roofline.py",
         "views/monitor.py", "views/compare.py"]


@pytest.mark.parametrize("page", PAGES)
def test_default_run_raises_nothing(page):
    at = open_app(page, seq="128")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title, "every page has a title"


def test_a_bad_spec_shows_an_error_not_an_exception():
    at = open_app("views/playground.py", heads="12", kv_heads="5")
    assert not at.exception
    assert any("multiple of kv_heads" in e.value for e in at.error)


def test_a_link_outside_the_editor_ranges_is_fitted_with_a_note_not_a_crash():
    at = open_app("views/playground.py", seq="2000000", dtype="float99", backend="fastest",
                  window="0")
    assert not at.exception, at.exception
    notes = [w.value for w in at.warning]
    assert "seq 2,000,000 from the link is outside 1..1,048,576: using 1,048,576" in notes
    assert "dtype 'float99' from the link is not one of float64, float32, bfloat16, float16: " \
           "using float32" in notes
    assert any(n.startswith("backend 'fastest' from the link") for n in notes)
    assert "window 0 from the link is outside 1..1,048,576: using 1" in notes
    assert at.number_input(key="w_seq").value == 1 << 20


def test_changing_the_spec_reruns_cleanly():
    at = open_app("views/playground.py", seq="64")
    at.number_input(key="w_seq").set_value(96).run()
    at.toggle(key="w_causal").set_value(False).run()
    at.number_input(key="w_kv_heads").set_value(2).run()
    assert not at.exception
    assert not at.error


def test_the_spec_editor_is_on_the_pages_that_use_it_and_the_spec_outlives_the_others():
    at = open_app("views/playground.py", seq="64")
    at.number_input(key="w_seq").set_value(96).run()
    at.switch_page("views/roofline.py").run()
    assert not at.exception
    assert not [w for w in at.number_input if w.key == "w_seq"], "no spec editor where no spec is used"
    at.switch_page("views/playground.py").run()
    assert at.number_input(key="w_seq").value == 96, "the spec set before the visit is kept"


def test_playground_profile_fills_the_cost_cards():
    at = open_app("views/playground.py", seq="64", variants="sdpa,linear")
    at.button(key="pg_profile").click().run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert labels.count("latency (median)") == 2
    assert labels.count("kernel error") == 2


def test_an_unsupported_variant_says_why():
    at = open_app("views/playground.py", seq="64", variants="linformer", causal="true")
    assert not at.exception
    assert any("cannot be causal" in w.value for w in at.warning)


def test_scaling_sweep_runs_to_the_end():
    at = open_app("views/scaling.py", seq="32", variants="sdpa,linear", lo="5", hi="6")
    at.button(key="sc_run").click().run()
    for _ in range(40):  # the fragment polls the job; rerun until the result lands
        if "sweep_result" in at.session_state:
            break
        at.run()
    assert not at.exception
    result = at.session_state["sweep_result"]
    assert {p["variant"] for p in result["points"]} == {"sdpa", "linear"}
    assert all(p["status"] == "ok" for p in result["points"])


def test_playground_on_real_inputs_takes_the_models_shape():
    at = open_app("views/playground.py", variants="sdpa,topk", src="model", text="A short sentence.")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    at.button(key="pg_profile").click().run()
    assert not at.exception
    assert [m.label for m in at.metric].count("approx error") == 2


def test_a_sequence_too_long_for_memory_is_a_message_and_the_page_goes_on():
    at = open_app("views/playground.py", seq="1000000", variants="dense")
    assert not at.exception
    at.button(key="pg_profile").click().run()
    assert not at.exception
    assert any("does not fit" in w.value for w in at.warning), [w.value for w in at.warning]


@pytest.mark.parametrize("page", ["views/overview.py", "views/compare.py", "views/roofline.py",
                                  "views/runs.py", "views/economics.py"])
def test_a_corrupt_run_store_is_a_message_and_the_file_is_kept(page, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_HOME", str(tmp_path))
    junk = b"this is not a database" * 100
    (tmp_path / "runs.sqlite").write_bytes(junk)
    at = open_app(page)
    assert not at.exception, at.exception
    assert any("cannot be opened" in e.value for e in at.error)
    assert (tmp_path / "runs.sqlite").read_bytes() == junk


def test_roofline_places_saved_profiles_of_this_device():
    from attn.runs import RunStore

    spec = {"seq": 64, "dtype": "float32", "device": "cpu"}
    result = {"achieved_tflops": 0.01, "cost": {"arithmetic_intensity": 12.0}, "latency_ms": 1.0}
    RunStore().save("profile", spec, result, variant="sdpa", environment={"device": "cpu", "device_kind": "cpu"})
    at = open_app("views/roofline.py")
    assert not at.exception
    assert not any("No profiled runs" in i.value for i in at.info)
