"""The Playground's maps under Streamlit's AppTest (ui/maps.py): a big spec's maps are drawn in the
worker on request (a bar with Cancel, kept in the session once they come back), a failure is one
line where the map would be, and a small spec's maps are still drawn in the page at once. The
jobs run on a thread (the in_process_jobs fixture); the specs are really big, not made to look so."""
from __future__ import annotations


import numpy as np
import pytest

from tests.conftest import clear_streamlit_caches, open_app, run_until

PRESS = "press **Draw the maps**"


def infos(at) -> list[str]:
    return [i.value for i in at.info]


def map_columns(at):
    """The columns of the variants (a subheader each), not those of the widgets."""
    return [c for c in at.columns if c.subheader]


@pytest.fixture
def computed_where(monkeypatch) -> list[str]:
    """Each call of maps_json, as 'page' (inside a script run of the app) or 'off the page'."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from attn import maps

    clear_streamlit_caches()
    from ui import results

    where: list[str] = []
    real = maps.maps_json

    def spy(*args, **kwargs):
        where.append("page" if get_script_run_ctx(suppress_warning=True) else "off the page")
        return real(*args, **kwargs)

    monkeypatch.setattr(maps, "maps_json", spy)  # what maps_task imports when it runs
    monkeypatch.setattr(results, "maps_json", spy)  # what the page's own (cached) maps call
    return where


@pytest.mark.slow  # 1.3e8 weights: 5 s alone on 2 cores, 30 s beside other work
def test_a_big_specs_maps_are_drawn_in_the_worker_on_request_and_kept(in_process_jobs, computed_where):
    # 8 heads x 4100 x 4100 = 1.34e8 weights, past the 2^27 the page draws at once
    at = open_app("views/playground.py", seq="4100", head_dim="16", variants="linear")
    assert not at.exception, at.exception
    assert not at.tabs and any(PRESS in i for i in infos(at)), "no map before the press"
    assert not in_process_jobs.jobs()
    at.button(key="pg_draw_maps").click().run()
    assert [(j.kind, j.title) for j in in_process_jobs.jobs()] == [("maps", "maps of linear")]
    run_until(at, lambda at: at.tabs, "the maps")
    assert [t.label for t in at.tabs] == ["weights", "mask", "head stats"]
    assert not any(PRESS in i for i in infos(at))
    assert computed_where == ["off the page"], "computed once, in the job, never in the page"
    stats = at.dataframe[0].value
    assert list(stats["head"]) == list(range(8)), "every head's statistics came back from the job"
    at.run()
    at.toggle(key="pg_log").set_value(False).run()  # the figure changes, the maps do not
    assert "pg_draw_maps" not in [b.key for b in at.button], "nothing left to draw: no button"
    assert not at.exception and len(at.tabs) == 3
    assert len(in_process_jobs.jobs()) == 1 and computed_where == ["off the page"], "nothing again"


def test_cancelling_leaves_the_page_working_with_a_message(in_process_jobs):
    # one head at 32768 x 32768: 2^30 weights, the CPU's bound (minutes of work)
    at = open_app("views/playground.py", seq="32768", heads="1", kv_heads="1", head_dim="8", variants="dense")
    at.button(key="pg_draw_maps").click().run()
    [job] = in_process_jobs.jobs()
    assert at.button(key="pg_maps_cancel"), "a Cancel button beside the bar"
    assert any("being drawn in the worker" in c.value for c in at.caption)
    at.toggle(key="pg_log").set_value(False).run()  # the page serves while the job runs
    assert not at.exception and job.status in ("queued", "running")
    at.button(key="pg_maps_cancel").click().run()
    run_until(at, lambda at: at.warning, "the cancel's message")
    assert job.status == "cancelled"
    assert [w.value for w in at.warning] == ["The maps of dense: cancelled"]
    assert [w.value for w in map_columns(at)[0].warning] == ["The maps of dense: cancelled"], "in its column"
    assert any(PRESS in i for i in infos(at)), "and they can be asked for again"
    at.select_slider(key="pg_cells").set_value(128).run()  # other maps: asked for on a press again
    assert not at.exception and not at.error and not at.warning and not at.tabs
    assert any(PRESS in i for i in infos(at))
    assert len(in_process_jobs.jobs()) == 1, "a cancelled map is not asked for again unpressed"


def test_a_job_that_fails_is_one_line_where_its_map_would_be(in_process_jobs):
    # 65536^2 weights: past the CPU's bound, which the job refuses before it draws any input
    at = open_app("views/playground.py", seq="65536", heads="1", kv_heads="1", variants="dense,sdpa")
    at.button(key="pg_draw_maps").click().run()
    assert [j.kind for j in in_process_jobs.jobs()] == ["maps", "maps"], "one job a variant"
    run_until(at, lambda at: len(at.error) == 2, "the two failures")
    line = ("maps of {} compute heads x seq x kv_seq = 4.29 G weights, past the 1.07 G attn computes for "
            "a map on cpu; use seq <= 32,768 at 1 head")
    assert [[e.value for e in c.error] for c in map_columns(at)] == [[line.format("dense")], [line.format("sdpa")]]
    assert not at.tabs and not any(PRESS in i for i in infos(at)), "the line says what to change instead"
    assert "pg_draw_maps" not in [b.key for b in at.button], "the same jobs would fail the same way"
    at.run()
    assert len(at.error) == 2 and len(in_process_jobs.jobs()) == 2, "kept, not asked again"


def test_a_small_specs_maps_are_drawn_in_the_page_with_no_job(in_process_jobs, computed_where):
    at = open_app("views/playground.py", seq="64", variants="sdpa,linear")
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["weights", "mask", "head stats"] * 2
    assert "pg_draw_maps" not in [b.key for b in at.button] and not any(PRESS in i for i in infos(at))
    assert not in_process_jobs.jobs()
    assert computed_where == ["page", "page"]



@pytest.mark.parametrize("mode", ["forward", "decode"])
def test_the_figures_of_a_jobs_maps_are_those_of_the_maps_it_sent(mode):
    """views_from_maps takes the dict a maps job hands back (after the codec's JSON), as the page's
    own maps do: the cells drawn are the cells sent, the mask is the variant's, a row a head."""
    from attn.jobs import codec
    from attn.maps import maps_json
    from attn.spec import AttentionSpec
    from ui.maps import views_from_maps

    spec = (AttentionSpec(seq=3, kv_seq=100, heads=2, head_dim=8, window=16) if mode == "decode"
            else AttentionSpec(seq=100, heads=2, head_dim=8, causal=True, window=16))
    m = codec.loads(codec.dumps(maps_json(spec, "sliding_window", head=1, max_size=50, reduce="max",
                                          mode=mode)))
    views = views_from_maps(m, "sliding_window", 1, "max", log_scale=False, mode=mode)
    drawn, mask = views["map"].data[0], views["mask"].data[0]
    np.testing.assert_array_equal(np.asarray(drawn.z), np.asarray(m["map"]["values"]))
    assert views["map"].layout.title.text.startswith("head 1 · max-pooled")
    assert np.asarray(mask.z).shape == np.asarray(drawn.z).shape
    visible = np.asarray(mask.z)
    assert visible.max() == 1 and visible.min() == 0, "a window of 16 hides the far keys"
    assert list(views["stats"]["head"]) == [0, 1] and "batch" not in views["stats"]
    if mode == "decode":  # the new tokens' rows, named by their place in the cache
        assert list(drawn.y) == ["97", "98", "99"]
