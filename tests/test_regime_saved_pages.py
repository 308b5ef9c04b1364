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


# -- Economics -------------------------------------------------------------------------------------

def frame_with(at, column: str):
    """The first table on the page with this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def buttons(at) -> set[str]:
    return {b.key for b in at.button}


def test_economics_prices_saved_decode_and_train_steps_beside_the_floor(saved):
    at = open_page("views/economics.py")
    assert not at.error, [e.value for e in at.error]
    # the old run (no mode) is the only prefill; the train and decode runs are priced in their sections
    prefill = at.dataframe[0].value
    assert list(prefill.columns) == ["sdpa"] and list(prefill.index) == [32]
    decode = frame_with(at, "$ per Mtok at the floor")
    assert list(decode["context"]) == ["256", "1,024"]
    # a CPU at $0.20/h; batch 2 x 1 new token per 0.05 ms step; the floor a fifth of the step
    assert decode["$ per Mtok"].iloc[0] == f"${0.20 / 3600 * 0.05e-3 / 2 * 1e6:.4g}"
    assert decode["$ per Mtok at the floor"].iloc[0] == f"${0.20 / 3600 * 0.01e-3 / 2 * 1e6:.4g}"
    assert list(decode["measured ÷ floor"]) == ["5×", "5×"]
    assert list(decode["J per Mtok"]) == ["—", "—"]
    assert any("energy is read from an NVIDIA GPU's counter" in c.value for c in at.caption)
    train = frame_with(at, "tokens per step")
    # forward 1 ms + backward 2 ms over 2 x 32 tokens
    assert train["$ per Mtok"].iloc[0] == f"${0.20 / 3600 * 3e-3 / 64 * 1e6:.4g}"
    assert (train["forward"].iloc[0], train["backward"].iloc[0], train["step"].iloc[0]) == ("1 ms", "2 ms", "3 ms")
    at.number_input(key="ec_cpu_price").set_value(3.6).run()  # $0.001 a second
    assert frame_with(at, "tokens per step")["$ per Mtok"].iloc[0] == f"${0.001 * 3e-3 / 64 * 1e6:.4g}"
    assert not at.exception and not {"ec_quick_decode", "ec_quick_train"} & buttons(at)


def test_economics_with_only_old_runs_says_how_to_measure_train_and_decode():
    from tests.regime_runs import old_profile

    RunStore().save("profile", SPEC, old_profile(), variant="sdpa", environment=CPU)
    at = open_page("views/economics.py", seq="32", heads="2", head_dim="16")
    assert not at.error
    infos = " ".join(i.value for i in at.info)
    assert "No training step saved on Test CPU (2 cores)" in infos and "--mode train" in infos
    assert "No decode step saved on Test CPU (2 cores)" in infos and "--mode decode" in infos
    assert "nothing to price" in infos
    assert at.button(key="ec_quick_decode") and at.button(key="ec_quick_train")
    assert not any("$ per Mtok at the floor" in d.value.columns for d in at.dataframe)


def test_economics_quick_decode_measurement_saves_decode_steps_and_prices_them():
    at = open_page("views/economics.py", seq="32", heads="2", head_dim="16")
    at.button(key="ec_quick_decode").click().run()
    assert not at.exception, at.exception
    store = RunStore()
    saved = [store.get(s.id) for s in store.list(mode="decode")]
    assert {r.variant for r in saved} == {"sdpa", "sliding_window", "linear"}
    assert {(r.spec["seq"], r.spec["kv_seq"]) for r in saved} == {(1, 32)}
    assert all(r.results["per_token_ms"] > 0 for r in saved)
    decode = frame_with(at, "$ per Mtok at the floor")
    assert set(decode["variant"]) == {"sdpa", "sliding_window", "linear"}
    assert "ec_quick_decode" not in buttons(at)


def test_economics_quick_train_measurement_saves_training_steps_and_prices_them():
    at = open_page("views/economics.py", seq="32", heads="2", head_dim="16")
    at.button(key="ec_quick_train").click().run()
    assert not at.exception, at.exception
    saved = [RunStore().get(s.id) for s in RunStore().list(mode="train")]
    assert {r.variant for r in saved} == {"sdpa", "sliding_window", "linear"}
    assert all(r.results["forward_ms"] > 0 and r.results["backward_ms"] > 0 for r in saved)
    train = frame_with(at, "tokens per step")
    assert set(train["variant"]) == {"sdpa", "sliding_window", "linear"} and set(train["seq"]) == {"32"}
    assert "ec_quick_train" not in buttons(at) and "ec_quick_decode" in buttons(at)
