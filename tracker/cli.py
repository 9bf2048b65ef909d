"""The `perfsleuth` command line (DESIGN.md §3): parse, call, print — nothing more.

Every PerfsleuthError becomes one line on stderr and its exit code; nothing prints a
traceback unless PERFSLEUTH_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tracker.errors import EXIT_RUN_FAILED, PerfsleuthError, RunFailedError, UsageError
from tracker.units import parse_duration

F = TypeVar("F", bound=Callable[..., Any])


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A click parameter for `500ms`, `10s`, `5m`, `1h`."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value, what=param.name if param and param.name else "duration")
        except UsageError as exc:
            self.fail(str(exc).split(": ", 1)[-1], param, ctx)


DURATION = DurationType()


def db_option(func: F) -> F:
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        default=None,
        help="Database URL (default $PERFSLEUTH_DB or sqlite:///perfsleuth.db in the cwd).",
    )(func)


# Options several commands share, declared once so their spelling and help stay the same.
gc_log_option = click.option(
    "--gc-log",
    default=None,
    metavar="FILE",
    help="The target JVM's GC log (-Xlog:gc:file=FILE), read for GC pauses.",
)
no_tui_option = click.option(
    "--no-tui",
    is_flag=True,
    help="Plain progress lines instead of the live screen (also when output is not a terminal).",
)
refresh_option = click.option(
    "--refresh",
    type=DURATION,
    default="1s",
    show_default=True,
    help="How often the live screen redraws (e.g. 3s over a slow SSH link).",
)
json_option = click.option(
    "--json", "json_path", default=None, metavar="FILE", help="Write the run JSON (- for stdout)."
)


def _label(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Tags and group names fit their 100-character columns (PostgreSQL enforces it)."""
    if value is not None and not 0 < len(value) <= 100:
        raise click.BadParameter("give 1 to 100 characters")
    return value


tag_option = click.option(
    "--tag", default=None, callback=_label, help="Label the run, e.g. a build or branch name."
)


def comparison_options(func: F) -> F:
    """The flags that tune a comparison, shared by `compare` and `run --baseline`."""
    for option in reversed(
        (
            click.option(
                "--threshold",
                "thresholds",
                multiple=True,
                metavar="NAME=PCT",
                help="Minimum effect for a metric (glob), e.g. latency_ms.p99=15 "
                "[p50 5, p90/p99 10, throughput 5, error_rate 1 point].",
            ),
            click.option(
                "--gate-probes",
                is_flag=True,
                help="Probe deltas can fail too (by default they only explain).",
            ),
            click.option(
                "--fail-on-inconclusive",
                is_flag=True,
                help="Exit 3 when the data cannot tell (too noisy, no baseline yet).",
            ),
            click.option(
                "--alpha",
                type=float,
                default=0.05,
                show_default=True,
                help="False discovery rate over the metrics compared.",
            ),
        )
    ):
        func = option(func)
    return func


def _fail(message: str, code: int) -> None:
    click.echo(f"perfsleuth: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="perfsleuth", prog_name="perfsleuth")
def cli() -> None:
    """Drive load at an HTTP service while watching the server; store, compare, explain."""


@cli.command()
@click.argument("scenario_file", metavar="[SCENARIO.toml]", required=False)
@click.option("--url", default=None, help="Target URL, e.g. http://127.0.0.1:8000/v1/completions.")
@click.option("--rate", type=float, default=None, help="Open model: requests per second.")
@click.option("--users", type=int, default=None, help="Closed model: concurrent users (default 1).")
@click.option("--duration", type=DURATION, default="10s", show_default=True, help="Load duration.")
@click.option(
    "--warmup", type=DURATION, default="0s", show_default=True, help="Excluded from the summary."
)
@click.option(
    "--arrival",
    type=click.Choice(["constant", "poisson"]),
    default="constant",
    show_default=True,
    help="Open model: evenly spaced or Poisson (seeded) arrivals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for Poisson / picks.")
@click.option(
    "--max-inflight",
    type=int,
    default=None,
    metavar="N",
    help="Open model: cap on requests in flight.",
)
@click.option(
    "--on-full",
    type=click.Choice(["queue", "drop"]),
    default="queue",
    show_default=True,
    help="At the cap: wait for a slot (latency still from the intended time) or drop.",
)
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Driver processes sharing the load."
)
@click.option("--path", default=None, help="Request path (overrides the URL's path).")
@click.option("--method", default=None, help="HTTP method (default GET, or POST with --body).")
@click.option("--body", default=None, metavar="JSON", help="JSON request body.")
@click.option(
    "--stream", type=click.Choice(["sse"]), default=None, help="Read the response as SSE."
)
@click.option(
    "--timeout", type=DURATION, default="60s", show_default=True, help="Total deadline per request."
)
@click.option(
    "--attach", "attach_pid", type=int, default=None, metavar="PID", help="Probe this process tree."
)
@click.option(
    "--attach-name", default=None, metavar="NAME", help="Probe the process matching NAME."
)
@click.option(
    "--launch", default=None, metavar="CMD", help="Start CMD, probe it, stop it at the end."
)
@click.option(
    "--probe-interval", type=DURATION, default=None, help="Probe sampling interval [250ms]."
)
@click.option(
    "--baseline",
    default=None,
    metavar="SPEC",
    help="Compare with a run id, tag:NAME, last:N or best:N; exit 1 on regression.",
)
@click.option(
    "--group",
    default=None,
    callback=_label,
    metavar="NAME",
    help="One of several hosts driving one test: runs of a group read as one (group:NAME).",
)
@comparison_options
@gc_log_option
@no_tui_option
@refresh_option
@json_option
@tag_option
@db_option
@click.pass_context
def run(ctx: click.Context, /, scenario_file: str | None, **options: Any) -> None:
    """Drive load (a SCENARIO.toml file, or --url and flags), probe a server, store the run.

    Exits 1 when an [slo] threshold of the scenario fails.
    """
    from tracker import commands

    given = {
        name
        for name in options
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    commands.run(scenario_file, options, given)


@cli.command()
@click.argument("pid", type=int, required=False)
@click.option("--name", default=None, metavar="NAME", help="Attach to the process matching NAME.")
@gc_log_option
@click.option("--duration", type=DURATION, default=None, help="How long to watch [until Ctrl-C].")
@click.option(
    "--probe-interval", type=DURATION, default="250ms", show_default=True, help="Sampling interval."
)
@no_tui_option
@refresh_option
@json_option
@tag_option
@db_option
def attach(
    pid: int | None,
    name: str | None,
    gc_log: str | None,
    duration: float | None,
    probe_interval: float,
    no_tui: bool,
    refresh: float,
    json_path: str | None,
    tag: str | None,
    db_url: str | None,
) -> None:
    """Probe a running process tree (PID or --name) without load, and store what it did."""
    from tracker import commands

    commands.attach(
        pid=pid,
        name=name,
        duration=duration,
        probe_interval=probe_interval,
        json_path=json_path,
        tag=tag,
        db_url=db_url,
        gc_log=gc_log,
        no_tui=no_tui,
        refresh_s=refresh,
    )


@cli.command()
@click.option("--duration", type=DURATION, default="40s", show_default=True, help="Load duration.")
@click.option(
    "--fault",
    type=click.Choice(["none", "cpu", "gc", "io"]),
    default="cpu",
    show_default=True,
    help="Fault switched on in the example server halfway through.",
)
@click.option("--rate", type=float, default=4.0, show_default=True, help="Requests per second.")
@no_tui_option
@refresh_option
@json_option
@db_option
def demo(
    duration: float,
    fault: str,
    rate: float,
    no_tui: bool,
    refresh: float,
    json_path: str | None,
    db_url: str | None,
) -> None:
    """Start the example LLM server, load it, inject a fault halfway, show what changed."""
    from tracker import commands

    commands.demo(
        duration=duration,
        fault=fault,
        rate=rate,
        json_path=json_path,
        db_url=db_url,
        no_tui=no_tui,
        refresh_s=refresh,
    )


@cli.command()
@click.argument("run_spec", metavar="RUN", default="latest")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["speedscope", "collapsed", "hdr", "csv"]),
    default="speedscope",
    show_default=True,
    help="Stack profile: speedscope JSON (https://www.speedscope.app) or collapsed stacks "
    "(flamegraph.pl). Per-second histograms: hdr (HdrHistogram interval log, values in µs) "
    "or csv (one row per window and metric, ms).",
)
@click.option("--out", required=True, metavar="FILE", help="Where to write it (- for stdout).")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="hdr/csv: only this histogram (repeatable), e.g. latency, ttft, 'latency|chat'. "
    "Default: all.",
)
@click.option(
    "--include-warmup",
    is_flag=True,
    help="hdr/csv: keep the warm-up windows (left out by default, as in the run's summary).",
)
@db_option
def export(
    run_spec: str,
    fmt: str,
    out: str,
    metrics: tuple[str, ...],
    include_warmup: bool,
    db_url: str | None,
) -> None:
    """Export a stored run's stack profile or per-second histograms (RUN: an id or `latest`)."""
    from tracker import commands

    commands.export(
        run_spec,
        fmt=fmt,
        out=out,
        db_url=db_url,
        metrics=metrics,
        include_warmup=include_warmup,
    )


@cli.command()
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
    type=click.Choice(["text", "md", "json", "junit"]),
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
def compare(
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
    from tracker.commands_compare import CompareSettings, compare
    from tracker.terminal import interactive

    settings = CompareSettings(baseline, thresholds, gate_probes, fail_on_inconclusive, alpha)
    if not no_tui and fmt == "text" and out is None and interactive():
        from tracker.tui.browse import compare_screen

        compare_screen(run_spec, settings, db_url=db_url)
        return
    compare(run_spec, settings, fmt=fmt, out=out, db_url=db_url)


@cli.command()
@click.argument("run_spec", metavar="RUN", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the run JSON document.")
@db_option
def show(run_spec: str, as_json: bool, db_url: str | None) -> None:
    """Show a stored run (an id, `latest`, or group:NAME for the runs of `run --group`)."""
    from tracker.report import render_run
    from tracker.runs import load_run
    from tracker.store import Store

    doc = load_run(Store.open(db_url), run_spec).document()
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(render_run(doc))


@cli.group(invoke_without_command=True)
@click.option(
    "--scenario",
    default=None,
    metavar="NAME|KEY",
    help="Trends and change points of one scenario (its name, or a key prefix).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=2),
    default=None,
    help="Runs listed [20], or runs in a scenario's series [200].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--fail-on-change",
    is_flag=True,
    help="Exit 1 when the scenario has a change point for the worse nobody accepted.",
)
@click.option(
    "--no-tui",
    is_flag=True,
    help="Plain text instead of the history screen (also when output is not a terminal).",
)
@db_option
@click.pass_context
def history(
    ctx: click.Context,
    scenario: str | None,
    limit: int | None,
    as_json: bool,
    fail_on_change: bool,
    no_tui: bool,
    db_url: str | None,
) -> None:
    """List stored runs, newest first; with --scenario, its trends and change points."""
    if ctx.invoked_subcommand is not None:
        return
    from tracker.commands_history import history as show_history
    from tracker.terminal import interactive

    if not no_tui and not as_json and interactive():
        from tracker.tui.browse import history_screen

        history_screen(scenario, limit=limit, fail_on_change=fail_on_change, db_url=db_url)
        return
    show_history(
        scenario, limit=limit, as_json=as_json, fail_on_change=fail_on_change, db_url=db_url
    )


@history.command("ack")
@click.argument("run_spec", metavar="RUN")
@click.option("--metric", default=None, help="The metric whose change to accept [all at RUN].")
@click.option("--note", default=None, help="Why, e.g. 'batching trades p99 for throughput'.")
@db_option
def history_ack(run_spec: str, metric: str | None, note: str | None, db_url: str | None) -> None:
    """Accept the change point at RUN (the first run of the new level): it stops alerting."""
    from tracker.commands_history import ack

    ack(run_spec, metric=metric, note=note, db_url=db_url)


@cli.group()
def db() -> None:
    """Database schema: upgrade it or show its revision."""


@db.command("upgrade")
@db_option
def db_upgrade(db_url: str | None) -> None:
    """Migrate the database to the newest schema."""
    from tracker.store import Store
    from tracker.store.database import current_revision

    store = Store.open(db_url)
    click.echo(f"{store.location} is at revision {current_revision(store.engine)}")


@db.command("current")
@db_option
def db_current(db_url: str | None) -> None:
    """Print the database's schema revision and the newest one."""
    from tracker.store import Store
    from tracker.store.database import current_revision, head_revision

    store = Store.open(db_url, upgrade=False)
    current = current_revision(store.engine)
    head = head_revision()
    state = "up to date" if current == head else "needs `perfsleuth db upgrade`"
    click.echo(f"{store.location}: revision {current or 'none'} (newest {head}; {state})")


def _sigterm_as_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    started = time.monotonic()
    # SIGTERM (CI cancelling a job, `kill`) stops a run the way Ctrl-C does: stored, 130.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        cli.main(args=argv, prog_name="perfsleuth", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("perfsleuth: aborted", err=True)
        sys.exit(130)
    except PerfsleuthError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        click.echo(f"perfsleuth: interrupted after {time.monotonic() - started:.0f}s", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("PERFSLEUTH_DEBUG"):
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (rerun with PERFSLEUTH_DEBUG=1 "
            "for the traceback, and please report it)",
            EXIT_RUN_FAILED,
        )
    sys.exit(0)


__all__ = ["RunFailedError", "cli", "main"]
