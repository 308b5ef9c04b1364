"""Markdown tables and one-line messages for the bench scripts' reports."""
from __future__ import annotations

from typing import Callable

Column = tuple[str, str, Callable[[object], str]]


def markdown(rows: list[dict], columns: list[Column]) -> str:
    """A markdown table: columns are (key, heading, format); a missing value prints as '-'."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("-" if value is None else fmt(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def f(spec: str) -> Callable[[object], str]:
    """A column format: format(value, spec)."""
    return lambda v: format(v, spec)


def mib(v: object) -> str:
    """Bytes as MiB, one decimal."""
    return f"{v / 2**20:.1f}"


def ratio(measured: float | None, predicted: float | None) -> float | None:
    """measured / predicted, or None where either is missing or the prediction is zero."""
    if measured is None or not predicted:
        return None
    return measured / predicted


def first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]
