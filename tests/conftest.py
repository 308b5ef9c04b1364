"""Shared test set-up: no test touches the user's ~/.attn. attn and ui are imported from the
editable install (`make install`); pytest.ini puts the checkout on the path for tests.* and bench.*."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_attn_home(tmp_path_factory, monkeypatch):
    if "ATTN_HOME_FOR_TESTS" not in os.environ:
        home = tmp_path_factory.mktemp("attn_home")
        monkeypatch.setenv("ATTN_HOME", str(home))
    yield


@pytest.fixture
def in_process_jobs():
    """Jobs on a thread of this process: what the app's AppTest tests run their work on."""
    from attn import jobs

    runner = jobs.JobRunner(in_process=True)
    jobs.set_default_runner(runner)
    yield runner
    runner.shutdown()
    jobs.set_default_runner(None)


@pytest.fixture
def queued(in_process_jobs, monkeypatch) -> list[tuple[str, tuple]]:
    """The jobs the pages submit, as (function name, args); each is replaced by one that only
    waits to be cancelled, and is cancelled at once: what a page would start, with nothing
    measured (tests/test_hostile_links.py checks it against the page's bounds)."""
    from tests import jobfns

    calls: list[tuple[str, tuple]] = []
    real = in_process_jobs.submit

    def submit(fn, *args, kind="job", title="", **kwargs):
        calls.append((fn.__name__, args))
        handle = real(jobfns.until_cancelled, kind=kind, title=title)
        handle.cancel()
        return handle

    monkeypatch.setattr(in_process_jobs, "submit", submit)
    return calls


def open_app(page: str, **params: str):
    """The app under Streamlit's AppTest, with URL parameters, switched to one of its pages."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    return at


def run_until(at, check, what: str, timeout: float = 120.0):
    """Rerun an AppTest page (as a fragment's timer would) until `check(at)` holds. The timeout is
    a bound for liveness on a busy machine, not a timing under test."""
    import time

    deadline = time.monotonic() + timeout
    while not check(at.run()):
        assert not at.exception, at.exception
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return at


def clear_streamlit_caches() -> None:
    """Streamlit's caches outlive an AppTest: a test that counts what a page computes empties them
    first, or a map another test drew would be a hit, not a call."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
