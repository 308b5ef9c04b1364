"""The Runs and Economics pages under Streamlit's AppTest, with an empty store and with a few
saved runs (written straight into the test's ATTN_HOME store)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_app

from attn.runs import RunStore
from attn.spec import AttentionSpec

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("in_process_jobs")
CPU = {"device": "Test CPU (2 cores)", "device_kind": "cpu", "torch": "2.13.0"}
GPU = {"device": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "driver": "550.54"}


def profile(variant: str, seq: int, latency_ms: float, error: float, energy_j: float | None = None) -> dict:
    spec = AttentionSpec(seq=seq, heads=2, head_dim=16, causal=True, device="cpu").to_dict()
    return {"variant": variant, "spec": spec, "latency_ms": latency_ms, "p10_ms": latency_ms * 0.9,
            "p90_ms": latency_ms * 1.1, "flops": 4 * 2 * 16 * seq * seq, "peak_bytes": 1000 * seq,
            "achieved_tflops": 0.01, "kernel_error": 1e-7, "approx_error": error, "energy_j": energy_j}


def sweep() -> dict:
    spec = AttentionSpec(seq=32, heads=2, head_dim=16, causal=True, device="cpu")
    points = [{"variant": v, "x": x, "status": "ok", "latency_ms": k * x / 100, "peak_bytes": k * x * 64,
               "footprint_bytes": k * x * 64 + 3 * 2 * x * 16 * 4, "flops": 4 * 2 * 16 * x * x,
               "approx_error": e, "energy_j": None, "spec": spec.with_(seq=x, kv_seq=x).to_dict()}
              for v, k, e in (("sdpa", 1.0, 1e-7), ("linear", 0.5, 0.3)) for x in (32, 64, 128)]
    return {"axis": "seq", "xs": [32, 64, 128], "variants": ["sdpa", "linear"], "device": "cpu",
            "points": points, "fits": {}, "crossovers": [], "spec": spec.to_dict(),
            "walls": [{"variant": "sdpa", "x": 4096, "budget_bytes": 2**30, "projected": True, "note": "p"}]}


@pytest.fixture
def saved() -> dict[str, int]:
    store = RunStore()
    ids = {}
    for variant, latency, error in (("sdpa", 0.2, 1e-7), ("linear", 0.3, 0.25), ("topk", 0.5, 0.1)):
        p = profile(variant, 32, latency, error)
        ids[variant] = store.save("profile", p["spec"], p, variant=variant, environment=CPU,
                                  label=f"<i>{variant}</i>")
    g = profile("sdpa", 32, 0.01, 1e-7, energy_j=0.002)
    ids["gpu"] = store.save("profile", g["spec"], g, variant="sdpa", environment=GPU)
    s = sweep()
    ids["sweep"] = store.save("sweep", s["spec"], s, variant="sdpa,linear", environment=CPU)
    return ids


def open_page(page: str, **params: str) -> AppTest:
    at = open_app(page, **params)
    assert not at.exception, at.exception
    return at


def test_runs_page_with_no_runs_says_how_to_make_some():
    at = open_page("views/runs.py")
    assert at.title[0].value.endswith("Runs")
    assert any("No runs saved yet" in i.value for i in at.info)


def test_runs_page_lists_filters_and_searches(saved):
    at = open_page("views/runs.py")
    assert len(at.dataframe[0].value) == 5
    at.selectbox(key="rn_kind").set_value("sweep").run()
    assert list(at.dataframe[0].value["id"]) == [saved["sweep"]]
    at.selectbox(key="rn_kind").set_value("all").run()
    at.selectbox(key="rn_device").set_value("cuda").run()
    assert list(at.dataframe[0].value["id"]) == [saved["gpu"]]
    at.selectbox(key="rn_device").set_value("all").run()
    at.selectbox(key="rn_variant").set_value("linear").run()  # the profile and the sweep with it
    assert set(at.dataframe[0].value["id"]) == {saved["linear"], saved["sweep"]}
    at.selectbox(key="rn_variant").set_value("all").run()
    at.text_input(key="rn_search").set_value("topk").run()
    assert list(at.dataframe[0].value["id"]) == [saved["topk"]]
    at.text_input(key="rn_search").set_value("nothing like this").run()
    assert not at.exception
    assert any("No run matches" in i.value for i in at.info)


def test_selecting_runs_offers_compare_and_exports(saved):
    at = open_page("views/runs.py", runs=f"{saved['sdpa']},{saved['sweep']}")
    assert at.multiselect(key="rn_selected").value == [saved["sdpa"], saved["sweep"]]
    assert at.button(key="rn_compare").disabled  # Compare shows profiles, and there is one
    at.multiselect(key="rn_selected").set_value([saved["sdpa"], saved["linear"]]).run()
    assert not at.exception
    assert not at.button(key="rn_compare").disabled
    at.toggle(key="rn_with_maps").set_value(True).run()
    assert not at.exception


def test_compare_opens_the_compare_page_with_the_selection(saved):
    at = open_page("views/runs.py", runs=f"{saved['sdpa']},{saved['linear']}")
    at.button(key="rn_compare").click().run()
    assert not at.exception
    assert at.title[0].value.endswith("Compare")
    assert at.multiselect(key="cmp_runs").value == [saved["sdpa"], saved["linear"]]
    specs = at.dataframe[0].value.loc["spec"]  # the run store's own short form of a spec
    assert list(specs) == ["B1 S32 H2 D16 float32 causal"] * 2


def test_delete_asks_first_and_cancel_keeps_the_runs(saved):
    at = open_page("views/runs.py", runs=str(saved["topk"]))
    at.button(key="rn_delete").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    assert RunStore().count() == 5
    at.button(key="rn_delete_no").click().run()
    assert RunStore().count() == 5
    assert not any("cannot be undone" in w.value for w in at.warning)
    at.button(key="rn_delete").click().run()
    at.button(key="rn_delete_yes").click().run()
    assert not at.exception
    assert RunStore().count() == 4
    assert any("Deleted 1 run" in s.value for s in at.success)
    assert at.multiselect(key="rn_selected").value == []


def test_one_selected_run_can_be_relabelled(saved):
    at = open_page("views/runs.py", runs=str(saved["linear"]))
    at.text_input(key=f"rn_label_{saved['linear']}").set_value("baseline").run()
    at.button(key="rn_label_save").click().run()
    assert not at.exception
    assert RunStore().get(saved["linear"]).label == "baseline"


def test_rerun_measures_a_saved_profile_again_and_saves_it(saved):
    at = open_page("views/runs.py", runs=str(saved["sdpa"]))
    at.button(key="rn_rerun").click().run()
    assert not at.exception, at.exception
    store = RunStore()
    assert store.count() == 6
    newest = store.get(store.list(limit=1)[0].id)
    assert newest.kind == "profile" and newest.variant == "sdpa" and newest.spec["seq"] == 32
    assert newest.results["latency_ms"] > 0
    assert any("Saved as" in s.value for s in at.success)


def test_economics_with_no_runs_explains_and_still_prices_the_kv_cache():
    at = open_page("views/economics.py")
    assert any("No saved profiles or sweeps" in i.value for i in at.info)
    assert at.button(key="ec_quick")
    kv = at.dataframe[0].value
    assert list(kv["sharing"])[0].startswith("MHA") and list(kv["sharing"])[-1].startswith("MQA")


def test_economics_prices_saved_runs_and_reruns_cleanly(saved):
    at = open_page("views/economics.py", seq="64")
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="ec_device").value == CPU["device"]  # the device with most points
    usd, joules, points = (d.value for d in at.dataframe[:3])
    assert list(usd.columns) == ["linear", "sdpa", "topk"] and list(usd.index) == [32, 64, 128]
    # sdpa at 32 tokens: the sweep's 0.32 ms is newer than the profile's 0.2 ms; a CPU at $0.20/h
    assert usd.loc[32, "sdpa"] == f"${0.20 / 3600 * 0.32e-3 / 32 * 1e6:.3g}"
    assert joules.loc[32, "sdpa"] == "—"
    assert set(points["variant"]) == {"sdpa", "linear", "topk"}
    at.number_input(key="ec_cpu_price").set_value(1.0).run()
    assert at.dataframe[0].value.loc[32, "sdpa"] == f"${1.0 / 3600 * 0.32e-3 / 32 * 1e6:.3g}"
    at.select_slider(key="ec_seq").set_value(32).run()
    at.number_input(key="ec_budget").set_value(0.001).run()
    at.number_input(key="ec_context").set_value(1024).run()
    at.selectbox(key="ec_device").set_value(GPU["device"]).run()
    assert not at.exception
    assert at.dataframe[1].value.loc[32, "sdpa"] == f"{0.002 / 32 * 1e6:.3g} J"
    assert not at.error


@pytest.mark.slow
def test_economics_quick_sweep_fills_the_page():
    at = open_page("views/economics.py", seq="32", heads="2", head_dim="16")
    at.button(key="ec_quick").click().run()
    assert not at.exception, at.exception
    assert RunStore().count(kind="sweep") == 1
    at.run()
    assert not any("No saved profiles" in i.value for i in at.info)


@pytest.mark.slow
def test_rerun_of_a_sweep_measures_every_point_again(saved):
    at = open_page("views/runs.py", runs=str(saved["sweep"]))
    at.button(key="rn_rerun").click().run()
    assert not at.exception, at.exception
    store = RunStore()
    newest = store.get(store.list(limit=1)[0].id)
    assert newest.kind == "sweep" and newest.id != saved["sweep"]
    assert {(p["variant"], p["x"]) for p in newest.results["points"]} == {
        (v, x) for v in ("sdpa", "linear") for x in (32, 64, 128)}
