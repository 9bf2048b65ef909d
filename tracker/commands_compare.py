"""What `perfsleuth compare` and `run --baseline` do once their flags are parsed.

Exit codes (DESIGN.md §3): 0 no regression; 1 a gating metric regressed; 2 bad input;
3 inconclusive, only with `--fail-on-inconclusive`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tracker.analysis.compare import Comparison, Options
from tracker.errors import UsageError

if TYPE_CHECKING:
    from tracker.store import Store

EXIT_REGRESSION = 1
EXIT_INCONCLUSIVE = 3
FORMATS = ("text", "md", "json", "junit")


@dataclass(frozen=True)
class CompareSettings:
    """The comparison flags `compare` and `run --baseline` share."""

    baseline: str
    thresholds: tuple[str, ...] = ()
    gate_probes: bool = False
    fail_on_inconclusive: bool = False
    alpha: float = 0.05

    def options(self) -> Options:
        return Options(
            thresholds_pct=parse_thresholds(self.thresholds),
            gate_probes=self.gate_probes,
            alpha=self.alpha,
        )


def parse_thresholds(items: tuple[str, ...]) -> dict[str, float]:
    """`NAME=PCT` pairs (NAME may be a glob such as `llm.*.p99`) -> {pattern: percent}."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            pct = float(value)
            if not sep or not name.strip() or not 0 <= pct < 1000:
                raise ValueError
        except ValueError:
            raise UsageError(
                f"--threshold: {item!r} is not NAME=PERCENT; e.g. --threshold latency_ms.p99=15"
            ) from None
        out[name.strip()] = pct
    return out


def exit_code(comparison: Comparison, fail_on_inconclusive: bool) -> int:
    if comparison.verdict == "regressed":
        return EXIT_REGRESSION
    if comparison.verdict == "inconclusive" and fail_on_inconclusive:
        return EXIT_INCONCLUSIVE
    return 0


def render(comparison: Comparison, fmt: str) -> str:
    from tracker.compare_report import RENDERERS

    doc = comparison.to_json()
    if fmt == "json":
        return json.dumps(doc, indent=2)
    return RENDERERS[fmt](doc)


def prepare(
    run_spec: str, settings: CompareSettings, db_url: str | None
) -> tuple[Store, Comparison]:
    """Check the flags, open the store and compare: what the report and the compare screen
    both start from (so their errors read the same)."""
    from tracker.comparing import compare_stored, parse_spec
    from tracker.runs import load_run
    from tracker.store import Store

    spec = parse_spec(settings.baseline)
    options = settings.options()
    if not 0 < settings.alpha < 0.5:
        raise UsageError(f"--alpha: {settings.alpha} is out of range; use e.g. 0.05")
    store = Store.open(db_url)
    return store, compare_stored(store, load_run(store, run_spec), spec, options)


def compare(
    run_spec: str, settings: CompareSettings, *, fmt: str, out: str | None, db_url: str | None
) -> None:
    """`perfsleuth compare`: print or write the report, exit per the contract."""
    _, comparison = prepare(run_spec, settings, db_url)
    text = render(comparison, fmt)
    if out and out != "-":
        try:
            Path(out).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--out: cannot write {out}: {exc.strerror}") from None
        click.echo(f"{comparison.verdict}: wrote the {fmt} report to {out}", err=True)
    else:
        click.echo(text.rstrip("\n"))
    sys.exit(exit_code(comparison, settings.fail_on_inconclusive))


def compare_after_run(
    run_id: int, settings: CompareSettings, db_url: str | None, document: dict[str, Any]
) -> Comparison:
    """`run --baseline`: compare the run just stored; the result joins its JSON document."""
    from tracker.comparing import compare_stored, parse_spec
    from tracker.runs import load_run
    from tracker.store import Store

    store = Store.open(db_url)
    comparison = compare_stored(
        store, load_run(store, str(run_id)), parse_spec(settings.baseline), settings.options()
    )
    document["comparison"] = comparison.to_json()
    return comparison
