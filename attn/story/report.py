"""The story as one HTML file for people who will never run the app: every chapter's sentences,
figure and numbers, the device and the date. plotly.js is inlined once (attn.report.html_page), so
the file makes no network request when opened."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping

from attn.report import escape, figure_html, html_page, table_html
from attn.story import CHAPTERS, Result

TITLE = "The cost of attention: a story in six measurements"
CSS = """
section.chapter { border: 1px solid #e2e8f0; border-radius: 8px; padding: 16px 20px; margin: 24px 0; }
section.chapter p.said { font-size: 17px; line-height: 1.55; max-width: 60em; }
p.question { color: #475569; font-style: italic; margin-top: -8px; }
p.failed { color: #b91c1c; }
"""


def story_html(results: Mapping[int, Result], when: str | None = None) -> str:
    """The chapters measured so far (by number; a failed one carries "error"), as one page."""
    when = when or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    measured = [r for r in results.values() if "error" not in r]
    device = measured[0]["device_name"] if measured else "no chapter was measured"
    sections = "\n".join(_chapter(ch.number, results.get(ch.number)) for ch in CHAPTERS)
    head = (f'<p class="meta">Measured on {escape(device)} by attn · report made {escape(when)} · '
            "FLOPs are useful FLOPs: 4·B·H·D per unmasked (query, key) pair · figures from the H100 "
            "anchor run are marked as not measured here</p>")
    return html_page(TITLE, head + "\n" + sections, CSS)


def _chapter(number: int, result: Result | None) -> str:
    ch = CHAPTERS[number - 1]
    top = (f'<section class="chapter" id="chapter-{number}">\n<h2>{number}. {escape(ch.title)}</h2>\n'
           f'<p class="question">{escape(ch.question)}</p>\n')
    if result is None:
        return top + "<p>Not measured: the story was exported before this chapter ran.</p>\n</section>"
    if "error" in result:
        return top + f'<p class="failed">This chapter\'s measurement failed: {escape(result["error"])}</p>\n</section>'
    said = "".join(f'<p class="said">{escape(s)}</p>' for s in ch.sentences(result))
    when = f'<p class="meta">measured {escape(result.get("measured_at", ""))} on {escape(result["device_name"])}</p>'
    return (top + said + "\n" + f"<div>{figure_html(ch.figure(result))}</div>\n" +
            table_html("The numbers", ch.numbers(result)) + when + "\n</section>")


def measure_story(numbers: list[int] | None = None, say=print) -> dict[int, Result]:
    """Run the chapters here, in order (what `attn story` does); a chapter that fails keeps its
    one line in words and the next one runs."""
    from attn import story

    results: dict[int, Result] = {}
    for number in numbers or [ch.number for ch in story.CHAPTERS]:
        title = story.chapter(number).title
        say(f"chapter {number}: {title} ...")
        try:
            results[number] = story.run_chapter(number)
        except Exception as err:  # the story goes on; the report says what went wrong
            results[number] = {"chapter": number, "error": f"{type(err).__name__}: {err}"}
            say(f"chapter {number} failed: {results[number]['error']}")
    return results
