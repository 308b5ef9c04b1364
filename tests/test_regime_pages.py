"""The Runs and Compare pages with runs of every regime, and with runs saved before the regimes
(no mode: forward), under Streamlit's AppTest."""
from __future__ import annotations

import pytest

from tests.conftest import open_app
from tests.regime_runs import CPU, SPEC, decode_profile, save_regime_runs, train_profile

from attn.runs import RunStore

pytestmark = pytest.mark.usefixtures("in_process_jobs")


@pytest.fixture
def saved() -> dict[str, int]:
    return save_regime_runs()


def open_page(page: str, **params: str):
    at = open_app(page, **params)
    assert not at.exception, at.exception
    return at


def test_runs_page_shows_each_runs_mode_and_filters_on_it(saved):
    at = open_page("views/runs.py")
    table = at.dataframe[0].value
    assert dict(zip(table["id"], table["mode"])) == {
        saved["old"]: "forward", saved["train"]: "train", saved["decode"]: "decode", saved["decode_long"]: "decode"}
    assert list(table.columns[:3]) == ["id", "kind", "mode"]
    at.selectbox(key="rn_mode").set_value("decode").run()
    assert list(at.dataframe[0].value["id"]) == [saved["decode_long"], saved["decode"]]
    assert at.query_params["mode"] == "decode"
    at.selectbox(key="rn_mode").set_value("forward").run()  # the old run, with no mode saved
    assert list(at.dataframe[0].value["id"]) == [saved["old"]]
    assert not at.exception


def test_a_link_with_a_mode_opens_the_runs_page_filtered(saved):
    at = open_page("views/runs.py", mode="train")
    assert at.selectbox(key="rn_mode").value == "train"
    assert list(at.dataframe[0].value["id"]) == [saved["train"]]


def test_rerun_of_a_train_profile_measures_a_training_step_again(saved):
    at = open_page("views/runs.py", runs=str(saved["train"]))
    at.button(key="rn_rerun").click().run()
    assert not at.exception, at.exception
    store = RunStore()
    newest = store.get(store.list(limit=1)[0].id)
    assert newest.id not in saved.values() and newest.mode == "train"
    assert newest.results["forward_ms"] > 0 and newest.results["backward_ms"] > 0
    assert newest.spec["seq"] == SPEC.seq
    assert any("Saved as" in s.value for s in at.success)


def test_rerun_of_a_decode_run_a_variant_cannot_decode_says_why(saved):
    store = RunStore()
    d = decode_profile("linformer")
    run_id = store.save("profile", d["spec"], d, variant="linformer", environment=CPU)
    at = open_page("views/runs.py", runs=str(run_id))
    at.button(key="rn_rerun").click().run()
    assert not at.exception
    assert any("cannot run here" in w.value for w in at.warning)
    assert store.count() == len(saved) + 1  # nothing measured, nothing saved


def test_compare_puts_modes_side_by_side_and_ratios_only_within_a_mode(saved):
    ids = [saved["old"], saved["train"], saved["decode"], saved["decode_long"]]
    at = open_page("views/compare.py", runs=",".join(map(str, ids)))
    assert not at.error, [e.value for e in at.error]  # the decode runs' maps too (one query row each)
    table = at.dataframe[0].value
    assert list(table.loc["mode"]) == ["forward", "train", "decode", "decode"]
    assert any("different regimes" in w.value for w in at.warning)
    latency = list(table.loc["latency (ms, median)"])
    # no ratio across modes; the second decode run is 4x the first (0.2 ms against 0.05 ms)
    assert "×" not in latency[1] and "×" not in latency[2]
    assert latency[3].endswith("(4.00×)")
    assert table.loc["per token (step ÷ new tokens)"].iloc[3].endswith("(4.00×)")
    # a regime's own numbers, and n/a where a run is of another regime
    assert list(table.loc["forward (median)"]) == ["n/a", "1 ms", "n/a", "n/a"]
    assert table.loc["saved for the backward"].iloc[1] == "8.5 KiB"
    assert list(table.loc["floor ÷ step (100% = at the floor)"]) == ["n/a", "n/a", "20.0%", "20.0%"]
    assert table.loc["context (cached keys)"].iloc[3] == "1,024"


def test_compare_of_two_train_runs_gives_ratios_and_no_warning(saved):
    store = RunStore()
    faster = store.save("profile", SPEC, train_profile(forward_ms=0.5, backward_ms=1.0), variant="sdpa",
                        environment=CPU)
    at = open_page("views/compare.py", runs=f"{saved['train']},{faster}")
    assert not at.warning
    table = at.dataframe[0].value
    assert table.loc["forward (median)"].iloc[1] == "500 µs  (0.50×)"
    assert table.loc["backward (median)"].iloc[1] == "1 ms  (0.50×)"
    assert "decode" not in " ".join(table.index)  # no decode rows when no decode run is chosen
