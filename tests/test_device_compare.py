"""Devices side by side (attn.device_compare, charts.device_bars, and the Compare, Economics and
Runs pages): the same work on several devices, a ledger of another device merged and shown."""
from __future__ import annotations

import pytest

from attn import charts, device_compare
from attn.runs import RunStore
from tests.conftest import open_app
from tests.test_runs_import import ledger
from tests.test_runs_pages import CPU, GPU, profile

L4 = {"device": "NVIDIA L4", "device_kind": "cuda"}


def save(store: RunStore, environment: dict, latency_ms: float, variant: str = "sdpa", seq: int = 32,
         **extra) -> int:
    p = {**profile(variant, seq, latency_ms, 1e-7), **extra}
    # the spec's device names where it ran; the same work on another device is still the same work
    spec = {**p["spec"], "device": environment["device_kind"]}
    return store.save("profile", spec, p, variant=variant, environment=environment)


def test_the_same_work_lines_up_across_devices_with_ratios_roofs_and_prices():
    store = RunStore()
    save(store, CPU, 2.0, roofline_pct=40.0)
    save(store, GPU, 0.05, roofline_pct=12.5)
    save(store, L4, 0.2)  # not calibrated there
    save(store, GPU, 0.04, roofline_pct=15.0)  # newer: stands for the H100
    save(store, CPU, 1.0, variant="linear")  # one device only: no line-up
    works = device_compare.works_on_several_devices(store.get(s.id) for s in store.list())
    assert len(works) == 1
    work = works[0]
    assert work.variant == "sdpa" and work.mode == "forward" and len(work.runs) == 3
    rows = device_compare.side_by_side(work, {"NVIDIA L4": 0.80})
    assert [r.device for r in rows] == [GPU["device"], "NVIDIA L4", CPU["device"]]  # fastest first
    assert [r.ratio for r in rows] == pytest.approx([1.0, 5.0, 50.0])
    assert [r.roof_pct for r in rows] == [15.0, None, 40.0]
    assert rows[1].roof_note == device_compare.NOT_CALIBRATED
    tokens = 1 * 32
    assert rows[0].usd_per_mtok == pytest.approx(2.50 / 3600 * 0.04e-3 / tokens * 1e6)  # the GPU default
    assert rows[1].usd_per_mtok == pytest.approx(0.80 / 3600 * 0.2e-3 / tokens * 1e6)  # its own price
    assert rows[2].price_per_hour == 0.20


def test_a_decode_step_s_roof_is_its_own_bandwidth_floor():
    assert device_compare.roof_share({"latency_ms": 0.5, "floor_ms": 0.1}, "decode") == pytest.approx(20.0)
    assert device_compare.roof_share({"latency_ms": 0.5}, "decode") is None
    assert device_compare.roof_share({"roofline_pct": 33.0}, "forward") == 33.0


def test_device_bars_put_devices_on_the_x_axis_and_say_what_is_missing():
    rows = [{"device": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "source": "lab", "run_id": 4,
             "latency_ms": 0.04, "ratio": 1.0, "roof_pct": 15.0, "usd_per_mtok": 0.001, "price_per_hour": 2.5},
            {"device": "Test CPU (2 cores)", "device_kind": "cpu", "source": "", "run_id": 1,
             "latency_ms": 2.0, "ratio": 50.0, "roof_pct": None, "usd_per_mtok": 0.003, "price_per_hour": 0.2}]
    fig = charts.device_bars(rows, "latency_ms")
    assert list(fig.data[0].x) == ["NVIDIA H100 80GB HBM3 (lab)", "Test CPU (2 cores)"]
    assert fig.data[0].text[1] == "2 ms · 50.00×"
    roof = charts.device_bars(rows, "roof_pct")
    assert roof.data[0].text[1] == "not calibrated" and roof.data[0].y[1] == 0
    assert charts.device_bars(rows, "usd_per_mtok").data[0].text[0] == "$0.001 at $2.50/h"


@pytest.fixture
def merged(tmp_path) -> RunStore:
    """This machine's CPU profiles, and another machine's ledger (an H100) merged in."""
    store = RunStore()
    save(store, CPU, 0.2)
    save(store, CPU, 0.3, variant="linear")
    ledger(tmp_path / "h100-box.sqlite", GPU)
    store.import_file(tmp_path / "h100-box.sqlite")
    return store


@pytest.mark.usefixtures("in_process_jobs")
def test_compare_shows_both_devices_of_a_merged_ledger(merged):
    at = open_app("views/compare.py", by="devices")
    assert not at.exception, at.exception
    works = at.selectbox(key="cmp_dev_work")
    assert len(works.options) == 2  # sdpa and linear, each on the CPU and the H100
    assert works.value == 0 and works.format_func(0).startswith("linear · forward")
    table = at.dataframe[0].value
    assert list(table["device"]) == [f"{GPU['device']} (h100-box)", CPU["device"]]
    assert list(table["× the fastest"]) == ["1.00×", "15.00×"]  # linear: 0.3 ms here, 0.02 ms there
    works.set_value(1).run()
    assert list(at.dataframe[0].value["× the fastest"]) == ["1.00×", "20.00×"]  # sdpa: 0.2 against 0.01
    at.radio(key="cmp_by").set_value("runs").run()
    assert not at.exception and "by" not in at.query_params


@pytest.mark.usefixtures("in_process_jobs")
def test_economics_prices_each_device_at_its_own_price(merged):
    at = open_app("views/economics.py")
    assert not at.exception, at.exception
    price = at.number_input(key="ec_dev_price_0")
    assert price.label.startswith(GPU["device"])
    price.set_value(4.0).run()
    table = next(d.value for d in at.dataframe if "× the fastest" in d.value.columns)
    assert list(table["$/h"]) == ["$4.00", "$0.20"]
    assert list(table["$ per Mtok"])[0] == f"${4.0 / 3600 * 0.02e-3 / 32 * 1e6:.4g}"  # linear, 0.02 ms


@pytest.mark.usefixtures("in_process_jobs")
def test_the_runs_page_offers_the_import_and_shows_where_runs_came_from(merged):
    at = open_app("views/runs.py")
    assert not at.exception, at.exception
    assert any("Import another machine" in e.label for e in at.expander)
    table = at.dataframe[0].value
    assert set(table["from"]) == {"here", "h100-box"}


@pytest.mark.usefixtures("in_process_jobs")
def test_an_empty_store_opens_the_import_at_once():
    at = open_app("views/runs.py")
    assert not at.exception
    assert any("Import another machine" in e.label for e in at.expander)
