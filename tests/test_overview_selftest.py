"""The Self-test section of the Overview page: runs `attn selftest` in the worker with a progress
step per check, shows the table (failed rows first, with their figures), and shows the last
saved self-test when this session has not run one."""
import time

import pytest

from attn import selftest
from attn.selftest_checks import FAILED, NOT_HERE, PASSED, Check
from tests.conftest import open_app

pytestmark = pytest.mark.usefixtures("in_process_jobs")


def pretend_run(device="auto", quick=False, progress=None, cancelled=None) -> dict:
    rows = [Check("dense forward against float64", "accuracy", PASSED, "worst kernel_error 1e-07"),
            Check("profiler median against an independent timer", "timing", FAILED,
                  "attn 2.000 ms vs 1.000 ms: 100.0% apart (bound 5%)"),
            Check("NVML energy over a known loop", "gpu", NOT_HERE, "", "needs a CUDA device")]
    for i, row in enumerate(rows):
        if progress:
            progress(i, len(rows), row.name)
    return {"device": "cpu", "device_name": "CPU (test)", "quick": quick, "mode": "all",
            "checks": [r.to_dict() for r in rows], "passed": 1, "failed": 1, "not_possible": 1,
            "complete": True, "wall_s": 0.1}


def test_the_section_runs_the_selftest_and_shows_its_table(monkeypatch):
    monkeypatch.setattr(selftest, "run_selftest", pretend_run)
    at = open_app("views/overview.py")
    assert not at.exception, at.exception
    assert "Self-test" in [h.value for h in at.subheader]
    at.button(key="ov_selftest_run").click().run()
    deadline = time.monotonic() + 60
    while "ov_selftest_result" not in at.session_state and time.monotonic() < deadline:
        time.sleep(0.2)
        at.run()
    assert not at.exception, at.exception
    assert any("1 passed" in e.value and "1 failed" in e.value for e in at.error)
    table = at.dataframe[-1].value
    assert list(table["status"]) == [FAILED, PASSED, NOT_HERE]  # failed first
    assert "attn 2.000 ms vs 1.000 ms" in table["figure"].iloc[0]
    assert table["why / what it compares"].iloc[2] == "needs a CUDA device"
    assert list(at.dataframe[0].value["kind"]) == ["selftest"]  # Latest runs lists the saved run


def test_the_last_saved_selftest_is_shown_on_a_new_visit():
    selftest.save(pretend_run(quick=True))
    at = open_app("views/overview.py")
    assert not at.exception, at.exception
    assert any("last self-test saved" in c.value for c in at.caption)
    assert "attn 2.000 ms vs 1.000 ms" in at.dataframe[-1].value["figure"].iloc[0]
