"""The forms of the Playground, Scaling, Models and Planner at their extremes (issue 16): each
value at the edge of its field, or past it, renders without an exception, and what a button then
queues stays inside the page's bounds (the jobs are recorded, never run: see test_hostile_links)."""
from __future__ import annotations

import pytest

from tests.conftest import open_app
from tests.test_hostile_links import MAX_SWEEP_POINTS, within_bounds

MEGABYTE = ("The cost of attention grows with the square of the context. " * 20_000)[:1 << 20]


def ran(at):
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_playground_at_its_largest_spec_draws_no_maps_unasked_and_queues_bounded_jobs(queued):
    at = open_app("views/playground.py")
    for key, value in (("w_batch", 4096), ("w_seq", 1 << 20), ("w_heads", 512), ("w_head_dim", 1024),
                       ("w_seed", 2**31 - 1)):
        at.number_input(key=key).set_value(value)
    ran(at)
    assert at.number_input(key="w_seq").value == 1 << 20
    assert any("press **Draw the maps**" in i.value for i in at.info)
    at.number_input(key="w_seq").set_value(10**30)  # past the field: Streamlit keeps it in range
    ran(at)
    assert 1 <= at.number_input(key="w_seq").value <= 1 << 20
    at.number_input(key="w_seq").set_value(1 << 20)
    at.button(key="pg_profile").click()
    ran(at)
    assert [name for name, _ in queued] == ["profile_task", "profile_task"]
    at.button(key="pg_draw_maps").click()  # asked for: in the worker, never in the page
    ran(at)
    assert [name for name, _ in queued] == ["profile_task"] * 2 + ["maps_task"] * 2
    for name, args in queued:
        within_bounds(name, args)


def test_a_sweep_is_at_most_25_points_and_a_million_is_not_taken(queued):
    at = open_app("views/scaling.py")
    at.number_input(key="sc_hi").set_value(10**6)
    ran(at)
    assert at.number_input(key="sc_hi").value <= 24, "the field refuses 2^1000000"
    at.number_input(key="sc_lo").set_value(0)
    at.number_input(key="sc_hi").set_value(24)
    at.number_input(key="sc_budget").set_value(5.0)
    ran(at)
    at.button(key="sc_run").click()
    ran(at)
    assert [name for name, _ in queued] == ["sweep_task"]
    within_bounds(*queued[0])
    assert len(queued[0][1][2]) == MAX_SWEEP_POINTS


def test_a_plan_of_a_megabyte_is_refused_in_one_line_and_not_queued(queued):
    at = open_app("views/planner.py")
    at.text_input(key="pl_plan").set_value(MEGABYTE)
    at.number_input(key="pl_tokens").set_value(512)
    at.number_input(key="pl_kv").set_value(128)
    ran(at)
    at.button(key="pl_go").click()
    ran(at)
    assert queued == []
    assert any("characters" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_a_megabyte_of_text_on_the_models_page_is_cut_at_max_tokens(queued):
    at = open_app("views/models.py")
    at.text_area(key="md_text").set_value(MEGABYTE)
    at.number_input(key="md_tokens").set_value(8192)
    ran(at)
    assert queued, "the page measures its text"
    for name, args in queued:
        within_bounds(name, args)
