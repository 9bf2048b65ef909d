"""Human-friendly durations (`500ms`, `10s`, `5m`, `1h`), used by the CLI and scenarios."""

from __future__ import annotations

import re

from tracker.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Return the duration in seconds.

    Args:
        text: e.g. ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"``; a bare number means seconds.
        what: the name of the option, used in the error message.

    Raises:
        UsageError: when the text is not a non-negative duration.
    """
    if isinstance(text, bool):
        raise UsageError(f"{what}: expected a duration such as 500ms, 10s, 5m or 1h, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise UsageError(f"{what}: must not be negative, got {text}")
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(
            f"{what}: {text!r} is not a duration; use a number with ms, s, m or h, e.g. 30s"
        )
    value, unit = match.groups()
    return float(value) * _FACTORS[unit or "s"]


def format_ms(value: float | None) -> str:
    """A latency for people: `0.35ms`, `812ms`, `12.40s`; `-` when there is none."""
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.2f}s"
    if value >= 100:
        return f"{value:.0f}ms"
    return f"{value:.2f}ms"


def format_duration(seconds: float) -> str:
    """Render seconds compactly for progress lines and summaries."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s".replace(".0s", "s")
    return f"{seconds / 60:.1f}m"


def format_value(value: float, unit: str) -> str:
    """A probe reading for people: `310 ms/s`, `12.5 %`, `2,500/s` for a bare rate (`1/s`)."""
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text}/{unit[2:]}" if unit.startswith("1/") else f"{text} {unit}".rstrip()
