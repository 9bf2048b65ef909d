"""`perfsleuth compare` and `run --baseline`: a run judged against a baseline, reported in
a registered format (tracker.reports), and the exit code of the verdict."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from tracker import reports
from tracker.cli import terminal
from tracker.cli.options import comparison_options, db_option
from tracker.cli.output import write_out
from tracker.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, UsageError

if TYPE_CHECKING:
    from tracker.analysis.compare import Comparison, Options
    from tracker.store import Store


@dataclass(frozen=True)
class CompareSettings:
    """The comparison flags `compare` and `run --baseline` share."""

    baseline: str
    thresholds: tuple[str, ...] = ()
    gate_probes: bool = False
    fail_on_inconclusive: bool = False
    alpha: float = 0.05

    def options(self) -> Options:
        from tracker.analysis.compare import Options

        return Options(
            thresholds_pct=parse_thresholds(self.thresholds),
            gate_probes=self.gate_probes,
            alpha=self.alpha,
        )


@click.command("compare")
@click.argument("run_spec", metavar="[RUN]", default="latest")
@click.option(
    "--baseline",
    default="last:5",
    show_default=True,
    metavar="SPEC",
    help="A run id, tag:NAME (those runs as a set), last:N (median of N), best:N, group:NAME.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(reports.names("compare")),
    default="text",
    show_default=True,
    help="Terminal text, Markdown (PR / nightly comment), JSON, JUnit XML.",
)
@click.option("--out", default=None, metavar="FILE", help="Write the report to FILE [stdout].")
@comparison_options
@click.option(
    "--no-tui",
    is_flag=True,
    help="The text report instead of the compare screen (also when output is not a terminal).",
)
@db_option
def command(
    run_spec: str,
    baseline: str,
    fmt: str,
    out: str | None,
    thresholds: tuple[str, ...],
    gate_probes: bool,
    fail_on_inconclusive: bool,
    alpha: float,
    no_tui: bool,
    db_url: str | None,
) -> None:
    """Compare a run (an id, `latest` or group:NAME) with a baseline: a verdict per
    metric, the likely cause. Exits 1 on a regression."""
    settings = CompareSettings(baseline, thresholds, gate_probes, fail_on_inconclusive, alpha)
    if not no_tui and fmt == "text" and out is None and terminal.interactive():
        from tracker.cli.screens import compare_screen

        compare_screen(run_spec, settings, db_url=db_url)
        return
    compare(run_spec, settings, fmt=fmt, out=out, db_url=db_url)


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
    return EXIT_OK


def render(comparison: Comparison, fmt: str) -> str:
    text: str = reports.render("compare", fmt, comparison.to_json())
    return text


def prepare(
    run_spec: str, settings: CompareSettings, db_url: str | None
) -> tuple[Store, Comparison]:
    """Check the flags, open the store and compare: what the report and the compare screen
    both start from (so their errors read the same)."""
    from tracker.documents.stored_run import load_run
    from tracker.regressions.baseline import compare_stored, parse_spec
    from tracker.store import Store

    spec = parse_spec(settings.baseline)
    options = settings.options()
    if not 0 < settings.alpha < 0.5:
        raise UsageError(f"--alpha: {settings.alpha} is out of range; use e.g. 0.05")
    store = Store.open(db_url, for_reading=True)
    return store, compare_stored(store, load_run(store, run_spec), spec, options)


def compare(
    run_spec: str, settings: CompareSettings, *, fmt: str, out: str | None, db_url: str | None
) -> None:
    """`perfsleuth compare` without its screen: print or write the report, exit per the
    contract."""
    _, comparison = prepare(run_spec, settings, db_url)
    text = render(comparison, fmt)
    if out and out != "-":
        write_out(out, text)
        click.echo(f"{comparison.verdict}: wrote the {fmt} report to {out}", err=True)
    else:
        click.echo(text.rstrip("\n"))
    sys.exit(exit_code(comparison, settings.fail_on_inconclusive))


def compare_after_run(
    run_id: int, settings: CompareSettings, db_url: str | None, document: dict[str, Any]
) -> Comparison:
    """`run --baseline`: compare the run just stored; the result joins its JSON document."""
    from tracker.documents.stored_run import load_run
    from tracker.regressions.baseline import compare_stored, parse_spec
    from tracker.store import Store

    store = Store.open(db_url)
    comparison = compare_stored(
        store, load_run(store, str(run_id)), parse_spec(settings.baseline), settings.options()
    )
    document["comparison"] = comparison.to_json()
    return comparison
