"""The Story page under AppTest: every chapter in the normal page and in presenter mode, the
measurements run ahead, a failed chapter said in words while the story goes on. The chapters'
sizes are shrunk (the measurements are the same code, smaller), so the page is what is tested."""
from __future__ import annotations

import pytest

from attn import story
from tests.conftest import open_app
from tests.test_story import break_chapter, shrink_story

pytestmark = pytest.mark.usefixtures("in_process_jobs")


@pytest.fixture(autouse=True)
def small_story(monkeypatch):
    shrink_story(monkeypatch)


def _headings(at) -> list[str]:
    return [h.value for h in at.header] + [t.value for t in at.title]


def test_the_whole_story_on_one_page():
    at = open_app("views/story.py")
    assert not at.exception
    heads = _headings(at)
    for ch in story.CHAPTERS:
        assert f"{ch.number}. {ch.title}" in heads
    assert len(at.get("plotly_chart")) == len(story.CHAPTERS)
    said = " ".join(m.value for m in at.markdown)
    assert "plain attention" in said and "MiniLM" in said and "H100" in said
    assert not at.error


def test_presenter_mode_one_chapter_at_a_time():
    at = open_app("views/story.py", present="1")
    assert not at.exception
    for ch in story.CHAPTERS:
        assert f"{ch.number}. {ch.title}" in _headings(at), ch.title
        assert len(at.get("plotly_chart")) == 1
        assert not at.error
        if ch.number < len(story.CHAPTERS):
            at.button(key="story_next").click().run()
    assert at.query_params["chapter"] == ["6"] or at.query_params["chapter"] == "6"
    kept = at.session_state["story_results"]
    assert sorted(kept) == [1, 2, 3, 4, 5, 6]
    at.button(key="story_prev").click().run()  # going back: kept, nothing measured again
    assert "5. Training against serving" in _headings(at)
    assert at.session_state["story_results"][5] is kept[5]


def test_a_failed_chapter_says_so_and_the_story_goes_on(monkeypatch):
    break_chapter(monkeypatch, 3, "the sparsity measurement broke")
    at = open_app("views/story.py", present="1", chapter="3")
    assert "3. Sparsity" in _headings(at)
    assert any("the sparsity measurement broke" in e.value for e in at.error)
    assert any("the story goes on" in i.value for i in at.info)
    at.button(key="story_next").click().run()
    assert "4. Sharing keys and values" in _headings(at)
    assert len(at.get("plotly_chart")) == 1 and not at.error
    at.button(key="story_prev").click().run()  # back to the failed one: said again, not measured again
    assert any("measurement failed" in e.value and "the sparsity measurement broke" in e.value
               for e in at.error)
