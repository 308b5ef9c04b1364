"""Variant parameters: each variant declares its own, and everything else is derived from that.

A `Param` says a parameter's name, default, valid range or choices, unit and a one-line help.
From the declaration come the spec's validation (with the range in the message), the CLI flag,
the sidebar field, the URL key, what a saved run stores and what a report shows. Variants
declare their parameters in their own module (`attn/variants/*.py`); the registry collects them
here when the variant is registered.

Nothing here imports torch, so the spec, the CLI parser and the UI can read the declarations
cheaply (they are only known once the variants that declare them are imported).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Value = int | float | str | bool


@dataclass(frozen=True)
class Param:
    """One variant parameter. `lo`/`hi` bound numbers (None: unbounded); `choices` lists the
    allowed strings."""

    name: str
    default: Value
    help: str
    lo: int | float | None = None
    hi: int | float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"a parameter's name must be an identifier, got {self.name!r}")
        self.check(self.default)

    @property
    def kind(self) -> type:
        return type(self.default)

    def range_text(self) -> str:
        """The valid values in words: 'one of auto, flash', '1..4,096', '>= 0'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.lo is not None and self.hi is not None:
            return f"{self.lo:,}..{self.hi:,}"
        if self.lo is not None:
            return f">= {self.lo:,}"
        if self.hi is not None:
            return f"<= {self.hi:,}"
        return "any " + self.kind.__name__

    def check(self, value: Any) -> Value:
        """The value if it is valid; else ValueError saying what to change."""
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"unknown {self.name} {value!r}: choose one of {', '.join(self.choices)}")
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.kind is int:
            # bools are ints in Python: True must not pass as a size of 1
            if isinstance(value, bool) or not isinstance(value, int):
                floor = " >= 0" if self.lo == 0 else ""
                raise ValueError(f"{self.name} must be a whole number{floor}, got {value!r}")
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"{self.name} must be a number, got {value!r}")
        if self.lo is not None and value < self.lo:
            if self.lo == 0 and self.kind is int:
                raise ValueError(f"{self.name} must be a whole number >= 0, got {value!r}")
            raise ValueError(f"{self.name} must be at least {self.lo}, got {value}")
        if self.hi is not None and value > self.hi:
            raise ValueError(f"{self.name} must be at most {self.hi:,}, got {value:,}")
        return value

    def parse(self, text: str) -> Value:
        """A value from a URL or a command line, validated."""
        if self.kind is bool:
            return self.check(text.strip().lower() in ("1", "true", "yes", "on"))
        if self.kind is int:
            try:
                return self.check(int(text))
            except ValueError as err:
                if "must" in str(err):
                    raise
                raise ValueError(f"{self.name} must be a whole number, got {text!r}") from None
        if self.kind is float:
            try:
                return self.check(float(text))
            except ValueError as err:
                if "must" in str(err):
                    raise
                raise ValueError(f"{self.name} must be a number, got {text!r}") from None
        return self.check(text)

    def describe(self) -> str:
        """The help line with the valid values and the default: for flags and fields."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.help}{unit}; {self.range_text()}, default {self.default}"


_DECLARED: dict[str, Param] = {}


def declare(param: Param) -> Param:
    """Make a parameter known. Two variants may share a parameter (the same declaration); two
    different declarations under one name would make a spec ambiguous, so they are refused."""
    known = _DECLARED.get(param.name)
    if known is not None and known != param:
        raise ValueError(f"parameter {param.name!r} is declared twice, differently: {known} and {param}")
    _DECLARED[param.name] = param
    return param


def declared() -> dict[str, Param]:
    """Every declared parameter by name, in declaration order."""
    return dict(_DECLARED)


def get(name: str) -> Param | None:
    return _DECLARED.get(name)
