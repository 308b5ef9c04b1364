"""Variant parameters: a declaration checks, parses and describes its values."""
import pytest

from attn import params
from attn.params import Param

WINDOW = Param("window", 256, "keys each query sees", lo=1, hi=1 << 20, unit="tokens")
BACKEND = Param("backend", "auto", "which kernel", choices=("auto", "flash"))
SHARP = Param("sharp", 0.5, "a number", lo=0.0, hi=1.0)


@pytest.mark.parametrize("param, value, message", [
    (WINDOW, 0, "window must be at least 1, got 0"),
    (WINDOW, 1 << 21, "window must be at most 1,048,576, got 2,097,152"),
    (WINDOW, True, "window must be a whole number, got True"),
    (WINDOW, 2.0, "window must be a whole number, got 2.0"),
    (Param("n", 1, "h", lo=0), -1, "n must be a whole number >= 0, got -1"),
    (BACKEND, "fast", "unknown backend 'fast': choose one of auto, flash"),
    (SHARP, float("nan"), "sharp must be a number, got nan"),
    (SHARP, 2.0, "sharp must be at most 1.0, got 2.0"),
])
def test_check_says_what_to_change(param, value, message):
    with pytest.raises(ValueError, match=message):
        param.check(value)


def test_parse_reads_text_as_the_declared_kind_and_validates():
    assert WINDOW.parse("64") == 64 and BACKEND.parse("flash") == "flash" and SHARP.parse("0.25") == 0.25
    with pytest.raises(ValueError, match="window must be a whole number, got 'many'"):
        WINDOW.parse("many")
    with pytest.raises(ValueError, match="window must be at least 1"):
        WINDOW.parse("0")


def test_describe_gives_help_unit_range_and_default():
    assert WINDOW.describe() == "keys each query sees (tokens); 1..1,048,576, default 256"
    assert BACKEND.describe() == "which kernel; one of auto, flash, default auto"


def test_a_bad_default_or_name_is_refused_when_declared():
    with pytest.raises(ValueError, match="at least 1"):
        Param("w", 0, "h", lo=1)
    with pytest.raises(ValueError, match="identifier"):
        Param("a b", 1, "h")


def test_one_name_declared_twice_differently_is_refused(monkeypatch):
    monkeypatch.setattr(params, "_DECLARED", {})
    params.declare(WINDOW)
    params.declare(WINDOW)  # two variants may share one declaration
    with pytest.raises(ValueError, match="declared twice, differently"):
        params.declare(Param("window", 128, "keys each query sees", lo=1))
