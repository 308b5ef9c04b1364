"""What every chapter's measurement carries: the device it ran on and the price of an hour of it."""
from __future__ import annotations

from datetime import datetime, timezone

from attn.readable import usd  # noqa: F401 (the chapters' dollars)
from attn.economics import DEFAULT_CPU_PRICE_PER_HOUR, DEFAULT_GPU_PRICE_PER_HOUR


def where() -> dict:
    """The device the worker measures on (a GPU when torch sees one), its name, and the default
    price of an hour of it (attn.economics' defaults: an H100's list price, a small VM's)."""
    from attn.device import device_name, resolve_device

    device = resolve_device("auto")
    gpu = device.startswith("cuda")
    return {"device": device, "device_name": device_name(device), "gpu": gpu,
            "price_per_hour": DEFAULT_GPU_PRICE_PER_HOUR if gpu else DEFAULT_CPU_PRICE_PER_HOUR,
            "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def times(a: float, b: float) -> str:
    """a / b as people say it: "3.2×", or "about the same" within 10%."""
    if not b:
        return "—"
    r = a / b
    if 0.9 <= r <= 1.1:
        return "about the same"
    return f"{r:.2g}×" if r < 10 else f"{r:,.0f}×"


def share(part: float, whole: float) -> str:
    return "—" if not whole else f"{100 * part / whole:.0f}%"
