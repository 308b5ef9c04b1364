"""Numbers as people read them: the same words in the app, the command line and the HTML report."""
from __future__ import annotations


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "—"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}".rstrip()


def nbytes(value: float | None) -> str:
    if value is None:
        return "—"
    for factor, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= factor:
            scaled = value / factor
            # past 999 TiB (an absurd spec refused) .3g would print 1.46e+03
            return f"{scaled:,.0f} {unit}" if abs(scaled) >= 1000 else f"{scaled:.3g} {unit}"
    return f"{int(value)} B"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1e3:.3g} µs"
    return f"{value:.4g} ms"


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def usd(value: float | None) -> str:
    """Dollars to two significant digits, never in e-notation ($0.000014, not $1.4e-05)."""
    import math

    if value is None:
        return "—"
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 0.01 or value <= 0:
        return f"${value:.2f}"
    return f"${value:.{1 - math.floor(math.log10(value))}f}"
