"""ui.follow: a page submits a job once, follows it after a rerun, sees its partial items, cancels
it, and reads one line for a failure (out of memory as a warning). Driven through a tiny page
under Streamlit's AppTest, with the jobs on a thread (the in_process_jobs fixture)."""
from __future__ import annotations

import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests import jobfns

pytestmark = pytest.mark.usefixtures("in_process_jobs")
WAIT_S = 20.0  # a bound for liveness on a busy machine, not a timing under test


def _page() -> None:
    """A page that runs the jobs named in st.session_state["submit"] when "go" is clicked (or, with
    "auto", on any run that finds nothing under its key yet, as the Models page asks only for a
    result it does not have) and writes down what it is handed back."""
    import streamlit as st

    from tests import jobfns
    from ui import follow
    from ui.follow import _slot, _store

    @st.cache_resource
    def shared() -> dict:
        return {}

    state = st.session_state
    key, store = state.get("key", "k"), shared() if state.get("shared") else None
    jobs = [follow.job(getattr(jobfns, name), *args, title=f"{name} job", tag=name)
            for name, args in state.get("submit", [])]
    # auto asks only while the store has nothing under the key: asking on every run would replace
    # a finished job with a new one before the page could read its result
    if st.button("go", key="go") or (state.get("auto") and _slot(key) not in _store(store)):
        follow.start(key, *jobs, store=store)
    view = follow.follow(key, "Adding", wait=state.get("wait", True), store=store)
    if view is not None:
        state["firsts"] = state.get("firsts", 0) + view.first
        st.text(f"partials {len(view.partials())}")
        for tag, result in view.results:
            st.text(f"{tag}: {result!r}")


def page(**state) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=WAIT_S)
    for name, value in state.items():
        at.session_state[name] = value
    return at.run()


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def bar_texts(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def run_until(at: AppTest, check, timeout: float = WAIT_S) -> AppTest:
    """Rerun the page (as a fragment's timer would) until `check(at)` holds."""
    deadline = time.monotonic() + timeout
    while not check(at.run()):
        assert time.monotonic() < deadline, f"timed out; the page shows {texts(at)} {bar_texts(at)}"
        time.sleep(0.05)
    return at


def test_the_result_comes_back_once_and_the_key_is_forgotten(in_process_jobs):
    at = page(submit=[("add", (2, 3))])
    assert not texts(at), "nothing is submitted before the click"
    at.button(key="go").click().run()
    assert not at.exception, at.exception
    assert len(texts(at)) == 2 and "add: {'sum': 5" in texts(at)[1]
    assert at.session_state["firsts"] == 1
    at.run()
    assert not texts(at) and not at.get("progress"), "handed back once: a rerun does not save it again"
    assert len(in_process_jobs.jobs()) == 1


def test_a_second_click_while_it_runs_submits_nothing(in_process_jobs, tmp_path):
    gate = tmp_path / "gate"
    at = page(submit=[("stream", (2, str(gate)))], wait=False)
    at.button(key="go").click().run()
    at.button(key="go").click().run()  # a double click, or the same question asked again
    assert len(in_process_jobs.jobs()) == 1
    gate.touch()
    run_until(at, lambda at: any(t.startswith("stream:") for t in texts(at)))
    assert "stream: {'points': 2}" in texts(at)
    run_until(at, lambda at: True)
    assert at.session_state["firsts"] == 1, "a live view says `first` once"
    assert "stream: {'points': 2}" in texts(at), "and keeps showing the finished job"
    at.button(key="go").click().run()  # finished: a click now measures again
    assert len(in_process_jobs.jobs()) == 2


def test_partial_items_and_progress_arrive_while_it_runs(tmp_path):
    gate = tmp_path / "gate"
    at = page(submit=[("stream", (3, str(gate)))], wait=False)
    at.button(key="go").click().run()
    run_until(at, lambda at: "partials 3" in texts(at))
    assert bar_texts(at) == ["Adding: point 3 of 3"]
    assert at.button(key="k_cancel"), "a Cancel button beside the bar"
    gate.touch()
    run_until(at, lambda at: not at.get("progress"))
    assert not at.error and not at.warning


def test_a_rerun_finds_the_running_job_and_waits_for_its_end(tmp_path):
    gate = tmp_path / "gate"
    at = page(submit=[("stream", (1, str(gate)))], wait=False)
    at.button(key="go").click().run()  # a run that ends while the job runs: a click elsewhere
    assert bar_texts(at)
    at.session_state["wait"] = True
    threading.Timer(0.3, gate.touch).start()
    at.run()  # no click: the page finds its job under the key and waits for it
    assert "stream: {'points': 1}" in texts(at)
    assert not at.get("progress"), "the bar goes once the job has ended"


def test_cancel_stops_the_job_and_says_so(in_process_jobs):
    at = page(submit=[("until_cancelled", ())], wait=False)
    at.button(key="go").click().run()
    run_until(at, lambda at: "partials 0" not in texts(at))
    at.button(key="k_cancel").click().run()
    run_until(at, lambda at: at.warning)
    assert [w.value for w in at.warning] == ["Adding: cancelled"]
    assert not at.error
    assert in_process_jobs.jobs()[0].status == "cancelled"
    assert "partials 0" not in texts(at), "what it streamed before the cancel is still handed over"


def test_a_failure_is_one_error_line():
    at = page(submit=[("fails", ("heads must be positive",))])
    at.button(key="go").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Adding: heads must be positive"]


def test_out_of_memory_is_a_warning_and_the_others_of_a_batch_still_answer():
    at = page(submit=[("refuse_as_too_big", ()), ("fails", ("boom",)), ("add", (1, 1))])
    at.button(key="go").click().run()
    assert not at.exception
    assert [w.value for w in at.warning] == [
        "refuse_as_too_big job: does not fit: dense at seq 1000000 needs ~119216.92 GiB, "
        "11 GiB free on cpu"]
    assert [e.value for e in at.error] == ["fails job: boom"], "a batch names the job that failed"
    assert any(t.startswith("add: {'sum': 2") for t in texts(at))


def test_a_shared_store_lets_a_second_session_follow_the_first_ones_job(in_process_jobs, tmp_path):
    gate = tmp_path / "gate"
    state = dict(submit=[("stream", (1, str(gate)))], auto=True, shared=True, wait=False,
                 key=f"shared-{tmp_path.name}")
    first, second = page(**state), page(**state)  # each asks on every run, as the Models page does
    assert len(in_process_jobs.jobs()) == 1, "the second session follows the first one's job"
    assert bar_texts(second), "with its progress bar"
    gate.touch()
    for at in (first, second):
        run_until(at, lambda at: any(t.startswith("stream:") for t in texts(at)))


def test_a_batch_reports_progress_together(in_process_jobs, tmp_path):
    from ui.follow import JobView

    gate = tmp_path / "gate"
    handles = [in_process_jobs.submit(jobfns.add, 1, 2, title="add"),
               in_process_jobs.submit(jobfns.stream, 2, str(gate), title="stream")]
    view = JobView(handles, ["a", "b"])
    deadline = time.monotonic() + WAIT_S
    while view.progress.fraction < 1.0 and time.monotonic() < deadline:  # the stream's 2 of 2
        time.sleep(0.01)
    assert view.progress == (1.0, "2 of 2 · point 2 of 2") and not view.finished
    assert view.results == [("a", handles[0].result())] and view.result == handles[0].result()
    gate.touch()
    handles[1].wait(WAIT_S)
    assert view.finished and view.ok and view.progress == (1.0, "done")
    assert [item["i"] for item in view.partials()] == [0, 1]
