"""Every page under hostile links (issue 16): huge and negative numbers, NaN, wrong types, empty
and unknown values, script tags and 100k-character values. Each page renders without an exception,
says in a warning what it did not take from the link, and queues no job outside its bounds (the
jobs are recorded and replaced by one that waits to be cancelled, so nothing is measured)."""
from __future__ import annotations

import math

import pytest

from tests.conftest import open_app
from tests.test_runs_pages import saved  # noqa: F401 (a fixture: a few runs in the test's store)

PAGES = ["overview", "playground", "scaling", "roofline", "monitor", "compare", "runs", "economics",
         "planner"]
LONG = "x" * 100_000
SCRIPT = "<script>alert(1)</script>"
# one AppTest run each, many keys at once: each case is what one hostile link could hold
CASES = {
    "huge": dict(seq=str(10**30), heads="-5", batch="1e9", window="nan", seed=str(2**64), block="0",
                 rank="1000000000", features=str(10**20)),
    "types": dict(seq="abc", heads="", head_dim="1.5", causal="maybe", dtype="float7", kv_seq="-1"),
    "names": dict(variants="nope,dense," + SCRIPT, unknown="1", mode="bogus", axis="bogus"),
    "text": dict(text=SCRIPT, q="<b>x</b>", label=SCRIPT, plan=SCRIPT, model=SCRIPT),
    "long": dict(text=LONG, variants=LONG, q=LONG, plan=LONG, dtype=LONG, mode=LONG),
    "model": dict(model="/etc"),
    "repeated": dict(seq="64,128", heads="4&heads=8", variants="sdpa,sdpa,sdpa"),
    "page": dict(head="-3", cells="7", src="bogus", layer="99", lo="-5", hi="99", gpu_price="-1",
                 cpu_price="nan", budget_gib="inf", layers="0", batch_kv="10000000", context="-1",
                 tokens="1e9", kv_heads="-1", activation="bogus", runs="1,abc,99999999999999999999",
                 kind="bogus", device_name="bogus", new_tokens="-4"),
    "decode": dict(mode="decode", context=str(10**30), new_tokens="abc"),
    "train": dict(mode="train", seq="1048576", batch="4096", heads="512", head_dim="1024"),
    "plan": dict(plan="0-99999999999:sliding_window:-1,all:block_sparse:0:bogus", kv_heads="99999",
                 tokens="-1", activation="relu"),
}
# the most a page may queue: a sweep's points and seconds, a profile's seconds, a model's tokens
MAX_SWEEP_POINTS, MAX_BUDGET_S, MAX_MODEL_TOKENS, MAX_SEQ = 25, 5.0, 8192, 1 << 20


def within_bounds(name: str, args: tuple) -> None:
    """A queued job's arguments inside what its page allows."""
    if name == "sweep_task":
        spec, _, xs, _, budget_s = args[:5]
        assert 1 <= len(xs) <= MAX_SWEEP_POINTS and max(xs) <= 1 << 24, xs
        assert math.isfinite(budget_s) and 0 < budget_s <= MAX_BUDGET_S, budget_s
        assert spec["seq"] <= MAX_SEQ
    elif name == "profile_task":
        spec, _, budget_s = args[:3]
        assert math.isfinite(budget_s) and 0 <= budget_s <= MAX_BUDGET_S, budget_s
        assert spec["seq"] <= MAX_SEQ and spec["batch"] <= 4096
    elif name == "maps_task":
        spec, _, head, size = args[:4]
        assert spec["seq"] <= MAX_SEQ and 0 <= head < spec["heads"] and size <= 512, (head, size)
    elif name.startswith("model_"):
        assert args[2] <= MAX_MODEL_TOKENS, args[2]
    elif name == "plan_task":
        assert args[5] <= 512 and len(args[1]) <= 10_000


def messages(at) -> str:
    return "\n".join([w.value for w in at.warning] + [e.value for e in at.error])


def opened(page: str, queued: list, **params: str):
    at = open_app(f"views/{page}.py", **params)
    assert not at.exception, [e.value for e in at.exception]
    for name, args in queued:
        within_bounds(name, args)
    return at


def test_spec_values_the_link_cannot_give_are_named_in_a_warning(queued):
    said = messages(opened("playground", queued, **CASES["huge"]))
    for line in ("seq 1,000,000,000,000,000,000,000,000,000,000 from the link is outside 1..1,048,576",
                 "heads -5 from the link is outside", "seed 18,446,744,073,709,551,616 from the link",
                 "batch '1e9' from the link is not a value", "window 'nan' from the link is not a value"):
        assert line in said, said
    said = messages(opened("scaling", queued, **CASES["types"]))
    for line in ("seq 'abc' from the link", "heads '' from the link", "head_dim '1.5' from the link",
                 "dtype 'float7' from the link is not one of"):
        assert line in said, said


def test_unknown_names_and_modes_are_named_and_left_out(queued):
    at = opened("playground", queued, **CASES["names"])
    said = messages(at)
    assert "nope" in said and "mode 'bogus' from the link" in said
    assert at.multiselect(key="pg_variants").value == ["dense"]


def test_the_playground_fits_its_own_link_values_with_a_warning(queued):
    at = opened("playground", queued, head="-3", cells="7", src="bogus", layer="99")
    said = messages(at)
    for line in ("head -3 from the link is outside 0..7: using 0", "cells '7' from the link is not one of",
                 "src 'bogus' from the link is not one of random, model"):
        assert line in said, said
    assert at.number_input(key="pg_head").value == 0 and at.select_slider(key="pg_cells").value == 256


def test_a_decode_link_at_a_huge_context_does_not_draw_its_maps_unasked(queued):
    at = opened("playground", queued, mode="decode", context=str(10**30), new_tokens="abc")
    said = messages(at)
    assert "context 1,000,000,000,000,000,000,000,000,000,000 from the link is outside" in said
    assert "new_tokens 'abc' from the link is not a whole number" in said
    assert any("press **Draw the maps**" in i.value for i in at.info), "drawn on request only"


def test_the_scaling_range_from_a_link_is_fitted_with_a_warning(queued):
    at = opened("scaling", queued, lo="-5", hi="99")
    said = messages(at)
    assert "lo -5 from the link is outside 0..24: using 0" in said
    assert "hi 99 from the link is outside 0..24: using 24" in said
    at = opened("scaling", queued, **CASES["names"])
    said = messages(at)
    assert "axis 'bogus' from the link is not one of" in said and "nope" in said
    assert at.multiselect(key="sc_variants").value == ["dense"]


def test_the_economics_page_fits_its_link_values_instead_of_failing(queued):
    at = opened("economics", queued, gpu_price="-1", cpu_price="nan", budget_gib="inf",
                layers="0", batch_kv="10000000", context=str(10**30))
    said = messages(at)
    for line in ("gpu_price -1.0 from the link is outside 0.0..10,000.0: using 0.0",
                 "cpu_price 'nan' from the link is not a finite number",
                 "budget_gib 'inf' from the link is not a finite number",
                 "layers 0 from the link is outside 1..1,000: using 1",
                 "batch_kv 10,000,000 from the link is outside 1..100,000",
                 "context 1,000,000,000,000,000,000,000,000,000,000 from the link is outside"):
        assert line in said, said


def test_the_planner_fits_its_link_values_with_a_warning(queued):
    at = opened("planner", queued, kv_heads="99999", tokens="-1", activation="bogus")
    said = messages(at)
    for line in ("kv_heads 99,999 from the link is outside 0..128: using 128",
                 "tokens -1 from the link is outside 1..512: using 1", "activation 'bogus' from the link"):
        assert line in said, said


def test_the_runs_page_names_a_filter_it_does_not_know(queued, saved):  # noqa: F811
    said = messages(opened("runs", queued, kind="bogus", mode="sideways"))
    assert "kind 'bogus' from the link is not one of" in said and "mode 'sideways'" in said



def test_runs_and_compare_name_the_run_ids_they_do_not_have(queued, saved):  # noqa: F811
    link = f"{saved['sdpa']},abc,99999999999999999999"
    for page, key in (("runs", "rn_selected"), ("compare", "cmp_runs")):
        at = opened(page, queued, runs=link)
        assert "runs: 'abc, 99999999999999999999' from the link are not among" in messages(at)
        assert at.multiselect(key=key).value == [saved["sdpa"]]

@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_every_hostile_link(page, case, queued, saved):  # noqa: F811
    at = opened(page, queued, **CASES[case])
    assert LONG not in messages(at), "a 100k-character value is not echoed whole"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["huge", "text", "long", "page", "plan"])
def test_the_models_page_renders_hostile_links(case, queued):
    opened("models", queued, **CASES[case])

