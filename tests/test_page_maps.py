"""Compare's and Scaling's maps under Streamlit's AppTest (ui/maps.py): a big run's or point's map is
never computed in the page; it is drawn in the worker on request (a bar with Cancel), its one line
where the map would be when the job gives none. Small ones are still drawn in the page at once."""
from __future__ import annotations

import pytest

from attn.runs import RunStore
from attn.spec import AttentionSpec
from tests.conftest import clear_streamlit_caches, open_app, run_until
from tests.regime_runs import CPU, SPEC, old_profile

pytestmark = pytest.mark.usefixtures("in_process_jobs")

# 65536^2 weights at one head: past the CPU's bound, so a job refuses it before drawing any input
# (the failure path needs no minutes of work); is_big says it goes to the worker
BIG = AttentionSpec(seq=65536, heads=1, kv_heads=1, head_dim=16, device="cpu")
REFUSED = ("maps of dense compute heads x seq x kv_seq = 4.29 G weights, past the 1.07 G attn computes for a map "
           "on cpu; use seq <= 32,768 at 1 head")
PRESS = "press **Draw the maps**"


@pytest.fixture
def computed_in_page(monkeypatch) -> list[str]:
    """The variants whose maps were computed inside a script run of the app (Streamlit's caches
    emptied first: they outlive an AppTest, and a map another test drew would not be computed)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    clear_streamlit_caches()

    from ui import results

    calls: list[str] = []
    real = results.maps_json

    def spy(spec, variant, *args, **kwargs):
        if get_script_run_ctx(suppress_warning=True):
            calls.append(f"{variant} {spec.seq}")
        return real(spec, variant, *args, **kwargs)

    monkeypatch.setattr(results, "maps_json", spy)
    return calls


def test_compare_draws_a_big_runs_map_in_the_worker_only_when_asked(in_process_jobs, computed_in_page):
    store = RunStore()
    small = store.save("profile", SPEC, old_profile(), variant="sdpa", environment=CPU)
    big = store.save("profile", BIG, {**old_profile("dense"), "spec": BIG.to_dict()}, variant="dense",
                     environment=CPU)
    at = open_app("views/compare.py", runs=f"{small},{big}")
    assert not at.exception, at.exception
    assert computed_in_page == ["sdpa 32"], "the small run's map is drawn here, the big one's is not"
    assert any(PRESS in i.value for i in at.info) and not in_process_jobs.jobs()
    assert "cmp_diff" not in [c.key for c in at.get("plotly_chart")], "no difference without both maps"
    at.button(key="cmp_draw_maps").click().run()
    assert [(j.kind, j.title) for j in in_process_jobs.jobs()] == [("maps", "maps of dense")]
    run_until(at, lambda at: at.error, "the job's refusal")
    assert [e.value for e in at.error] == [REFUSED]
    at.run()
    assert len(in_process_jobs.jobs()) == 1 and computed_in_page == ["sdpa 32"], "kept: nothing again"
    assert "cmp_draw_maps" not in [b.key for b in at.button], "its line says what to change: no button"


def test_compare_of_small_runs_has_no_button_and_a_difference_map(computed_in_page):
    store = RunStore()
    ids = [store.save("profile", SPEC, old_profile(v), variant=v, environment=CPU) for v in ("sdpa", "dense")]
    at = open_app("views/compare.py", runs=",".join(map(str, ids)))
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "cmp_draw_maps" not in [b.key for b in at.button]
    assert sorted(computed_in_page) == ["dense 32", "sdpa 32"]


def _picked(at, spec: AttentionSpec, variant: str = "dense") -> None:
    """A finished sweep of one point at `spec` in the session, and that point clicked."""
    from attn.sweep import Point, sweep_result

    point = Point(variant, spec.seq, "ok", latency_ms=1.0, peak_bytes=1024, approx_error=0.0, spec=spec.to_dict())
    at.session_state["sweep_result"] = sweep_result(spec, [variant], [spec.seq], "seq", "cpu", [point], 2**30,
                                                    "cpu", "forward").to_dict()
    at.session_state["sweep_pick"] = (variant, spec.seq)


def test_scaling_draws_a_big_points_map_in_the_worker_only_when_asked(in_process_jobs, computed_in_page):
    at = open_app("views/scaling.py", seq="32", variants="dense", lo="5", hi="6")
    _picked(at, BIG)
    at.run()
    assert not at.exception, at.exception
    assert any(PRESS in i.value for i in at.info) and not computed_in_page and not in_process_jobs.jobs()
    at.button(key="sc_draw_map").click().run()
    assert [j.kind for j in in_process_jobs.jobs()] == ["maps"]
    run_until(at, lambda at: at.error, "the job's refusal")
    assert [e.value for e in at.error] == [REFUSED] and not computed_in_page


def test_scaling_draws_a_small_points_map_at_once(in_process_jobs, computed_in_page):
    at = open_app("views/scaling.py", seq="32", variants="dense", lo="5", hi="6")
    _picked(at, SPEC.with_(batch=1))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "sweep_pick_map" in [c.key for c in at.get("plotly_chart")]
    assert computed_in_page == ["dense 32"] and not in_process_jobs.jobs()


@pytest.mark.slow  # 1.3e8 weights in the worker: seconds alone, tens of seconds beside other work
def test_compare_draws_a_big_runs_map_once_and_then_has_nothing_to_press(in_process_jobs, computed_in_page):
    spec = AttentionSpec(seq=11600, heads=1, kv_heads=1, head_dim=16, device="cpu")  # 1.35e8 weights
    store = RunStore()
    small = store.save("profile", SPEC, old_profile(), variant="sdpa", environment=CPU)
    run = store.save("profile", spec, {**old_profile("linear"), "spec": spec.to_dict()}, variant="linear",
                     environment=CPU)
    at = open_app("views/compare.py", runs=f"{small},{run}")
    at.button(key="cmp_draw_maps").click().run()
    run_until(at, lambda at: "cmp_map_%d" % run in [c.key for c in at.get("plotly_chart")], "the map")
    assert not at.error and computed_in_page == ["sdpa 32"], "the big map from the job's maps, not the page"
    assert "cmp_draw_maps" not in [b.key for b in at.button], "nothing left to draw: no button"
    at.run()
    assert len(in_process_jobs.jobs()) == 1 and not at.exception
