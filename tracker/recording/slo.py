"""Judging a run against the scenario's `[slo]` thresholds.

Used by the runner (a failed threshold makes `run` exit 1) and the reports. Thresholds
read the run JSON document, so what is judged is exactly what is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracker.scenario import Threshold


@dataclass(frozen=True)
class ThresholdResult:
    """One threshold and what the run measured for it."""

    threshold: Threshold
    value: float | None
    passed: bool

    def describe(self) -> str:
        t = self.threshold
        if self.value is None:
            return f"{t.describe()}: no data (the run measured nothing for it)"
        unit = f" {t.unit}" if t.unit else ""
        verdict = "ok" if self.passed else "FAILED"
        return f"{t.describe()}: measured {self.value:.4g}{unit} — {verdict}"

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold.describe(),
            "key": self.threshold.key,
            "limit": self.threshold.limit,
            "value": self.value,
            "passed": self.passed,
        }


def _read(doc: dict[str, Any], section: str, stat: str | None) -> float | None:
    current: Any = doc
    for part in section.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    if stat is not None:
        current = current.get(stat) if isinstance(current, dict) else None
    return float(current) if isinstance(current, int | float) else None


def evaluate(thresholds: tuple[Threshold, ...], doc: dict[str, Any]) -> list[ThresholdResult]:
    """Each threshold against the run document; a metric with no data fails.

    A missing value fails rather than passes so that a CI gate never goes green because
    nothing was measured (e.g. a TTFT threshold on a non-streaming run).
    """
    results = []
    for t in thresholds:
        value = _read(doc, t.section, t.stat)
        if value is None:
            passed = False
        elif t.bound == "max":
            passed = value <= t.limit
        else:
            passed = value >= t.limit
        results.append(ThresholdResult(t, value, passed))
    return results
