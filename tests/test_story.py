"""attn.story: each chapter measured here at a small size, its sentences carrying the measured
numbers (not canned ones), its figure, its numbers, and the story as one HTML file that asks the
network for nothing."""
from __future__ import annotations

import dataclasses
import re

import pytest

from attn import readable, story
from attn.cost import attention_cost
from attn.spec import AttentionSpec
from attn.story import anchors, bill, sharing, train_serve, wall
from attn.story.report import measure_story, story_html


def shrink_story(mp: pytest.MonkeyPatch) -> None:
    """The chapters at small sizes and short budgets: the same code, a few seconds each."""
    for module, name, value in ((wall, "MEASURED", (64, 128)), (wall, "BUDGET_S", 0.02),
                                (sharing, "STEP_CONTEXT", 512), (sharing, "BUDGET_S", 0.02),
                                (train_serve, "LENGTH", 128), (train_serve, "BUDGET_S", 0.02),
                                (bill, "BUDGET_S", 0.02)):
        mp.setattr(module, name, value)


@pytest.fixture(scope="module")
def results():
    with pytest.MonkeyPatch.context() as mp:
        shrink_story(mp)
        return measure_story(say=lambda line: None)


@pytest.mark.parametrize("number", range(1, 7))
def test_every_chapter_measures_says_and_draws(results, number):
    ch, r = story.chapter(number), results[number]
    assert "error" not in r, r.get("error")
    said = ch.sentences(r)
    assert 2 <= len(said) <= 3 and all(s.endswith(".") for s in said)
    assert len(ch.figure(r).data) >= 2
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in ch.numbers(r))
    assert r["device_name"] and r["measured_at"]


def test_the_kv_cache_lines_are_named_where_they_end(results):
    # a slide shows no legend: each sharing's line carries its name at its last point, in its colour
    lines = [t for t in story.chapter(4).figure(results[4]).data if t.type == "scatter"]
    assert [t.text[-1] for t in lines] == ["MHA", "GQA", "MQA"]
    assert all(not any(t.text[:-1]) and t.textfont.color == t.line.color for t in lines)


def test_the_sentences_are_written_from_the_measured_numbers(results):
    r = results[1]
    dense = max((p for p in r["measured"] if p["variant"] == "dense"), key=lambda p: p["seq"])
    assert readable.nbytes(dense["peak_bytes"]) in wall.wall_sentences(r)[0]
    changed = {**r, "walls": {"dense": 1234, "sdpa": 98765}}
    assert "1,234 tokens" in wall.wall_sentences(changed)[2] and "98,765" in wall.wall_sentences(changed)[2]
    s = results[5]
    assert readable.ms(s["train"]["backward_ms"]) in train_serve.train_serve_sentences(s)[0]


def test_the_wall_is_where_the_cost_model_stops_fitting():
    base = AttentionSpec(batch=1, seq=256, kv_seq=256, heads=8, kv_heads=8, head_dim=64, causal=True)
    free = 2**30
    n = wall.wall_length(base, "dense", free, 256)
    fits = lambda s: attention_cost(base.with_(seq=s, kv_seq=s), "dense").peak_bytes <= free  # noqa: E731
    assert fits(n) and not fits(n + 1)
    assert wall.wall_length(base, "sdpa", free, 256) > 10 * n  # no S×S weights written down
    assert wall.wall_length(base, "dense", 1, 256) == 0


def test_the_h100_figures_are_the_anchors_and_say_so():
    h = bill.h100_bill()
    assert h["prefill_ms"] == anchors.FLASH_CAUSAL_MS[bill.LENGTH]
    assert "not measured here" in h["source"]
    tokens = anchors.SHAPE["batch"] * bill.LENGTH
    assert h["prefill_usd"] == pytest.approx(2.50 / 3600 * h["prefill_ms"] / 1e3 / tokens * 1e6)


def test_the_kv_cache_model_is_exact_arithmetic():
    mha = next(p for p in sharing.cache_curve() if p["sharing"] == "MHA" and p["context"] == 131072)
    assert mha["cache_bytes"] == 2 * 32 * 128 * 2 * 32 * 131072  # K and V, heads, dims, bytes, layers


def test_the_exported_story_needs_no_network(results):
    html = story_html({**results, 3: {"chapter": 3, "error": "RuntimeError: it broke"}})
    assert not re.search(r"<script[^>]*\bsrc=[\"']?https?:", html)
    assert not re.search(r"<link[^>]*\bhref=[\"']?https?:", html)
    assert html.count("Plotly.newPlot") == 5  # five chapters drawn, the failed one in words
    assert "measurement failed: RuntimeError: it broke" in html
    assert results[1]["device_name"] in html and "not measured here" in html


def break_chapter(monkeypatch, number: int, message: str) -> None:
    """Chapter `number`'s measurement raises RuntimeError(message) (the runner is in-process)."""
    def broken(report=None):
        raise RuntimeError(message)

    chapters = list(story.CHAPTERS)
    chapters[number - 1] = dataclasses.replace(chapters[number - 1], measure=broken)
    monkeypatch.setattr(story, "CHAPTERS", tuple(chapters))


def test_a_chapter_that_fails_in_the_command_keeps_its_line(monkeypatch):
    break_chapter(monkeypatch, 2, "no model here")
    lines: list[str] = []
    out = measure_story([2], say=lines.append)
    assert out[2]["error"] == "RuntimeError: no model here" and "failed" in lines[-1]


def test_dollars_are_never_in_e_notation():
    assert readable.usd(1.36e-05) == "$0.000014" and readable.usd(0.00784) == "$0.0078"
    assert readable.usd(1.44) == "$1.44" and readable.usd(None) == "—"
