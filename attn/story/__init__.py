"""The story of attention economics in six chapters, each one live measurement on this device, a
figure and a few sentences written from the measured numbers:

    from attn import story
    result = story.CHAPTERS[0].measure()          # runs on this device (the worker runs it for the app)
    story.CHAPTERS[0].sentences(result)           # plain language, from the numbers
    story.CHAPTERS[0].figure(result)              # a plotly figure (attn.charts.story)
    story.CHAPTERS[0].numbers(result)             # (label, value) rows with their conventions

`run_chapter(number)` is what attn.tasks.story_chapter_task calls; a chapter's measurement module
imports torch and the models only inside its `measure_*` function, so the page that draws a kept
result never loads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import plotly.graph_objects as go

from attn.charts import story as figures
from attn.story import bill, looks, sharing, sparsity, train_serve, wall

Result = dict[str, Any]


@dataclass(frozen=True)
class Chapter:
    number: int  # 1..6
    title: str
    question: str  # the chapter's one-line question, for the presenter
    measure: Callable[..., Result]
    sentences: Callable[[Result], list[str]]
    figure: Callable[..., go.Figure]
    numbers: Callable[[Result], list[tuple[str, str]]]
    waits: str  # what the chapter measures, for the progress bar


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(1, "The quadratic wall", "Why is long context expensive?", wall.measure_wall,
            wall.wall_sentences, figures.wall_chart, wall.wall_numbers,
            "plain and fused attention at four lengths"),
    Chapter(2, "What attention looks at", "Does every token need every other?", looks.measure_looks,
            looks.looks_sentences, figures.heads_chart, looks.looks_numbers,
            "MiniLM's 72 heads on a sentence"),
    Chapter(3, "Sparsity", "What if we skip most pairs?", sparsity.measure_sparsity,
            sparsity.sparsity_sentences, figures.sparsity_chart, sparsity.sparsity_numbers,
            "windows and blocks on MiniLM's own queries and keys"),
    Chapter(4, "Sharing keys and values", "Why does serving run out of memory?", sharing.measure_sharing,
            sharing.sharing_sentences, figures.sharing_chart, sharing.sharing_numbers,
            "a decode step under MHA, GQA and MQA"),
    Chapter(5, "Training against serving", "Where does the money go?", train_serve.measure_train_serve,
            train_serve.train_serve_sentences, figures.train_serve_chart, train_serve.train_serve_numbers,
            "a training step and a decode step"),
    Chapter(6, "The bill", "What does a million tokens cost?", bill.measure_bill, bill.bill_sentences,
            figures.bill_chart, bill.bill_numbers, "a prefill and a decode step at the H100 anchor's shape"),
)


def chapter(number: int) -> Chapter:
    if not 1 <= number <= len(CHAPTERS):
        raise ValueError(f"the story has chapters 1 to {len(CHAPTERS)}, not {number}")
    return CHAPTERS[number - 1]


def run_chapter(number: int, report: Callable[[float, str], None] | None = None) -> Result:
    """Measure one chapter on this device; its result, a plain dict, with its number."""
    return {"chapter": number, **chapter(number).measure(report)}


__all__ = ["CHAPTERS", "Chapter", "Result", "chapter", "run_chapter"]
