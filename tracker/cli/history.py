"""`perfsleuth history` (stored runs; one scenario's trends and change points) and
`history ack` (accept a change point)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from tracker.cli import terminal
from tracker.cli.options import db_option
from tracker.errors import EXIT_REGRESSION, UsageError

if TYPE_CHECKING:
    from tracker.records import RunRecord
    from tracker.store import Store


@click.group("history", invoke_without_command=True)
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
@click.option(
    "--status",
    type=click.Choice(["completed", "interrupted", "failed", "running", "abandoned"]),
    default=None,
    help="List only the runs in this state (abandoned: killed, see `db prune`).",
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
def group(
    ctx: click.Context,
    scenario: str | None,
    limit: int | None,
    status: str | None,
    as_json: bool,
    fail_on_change: bool,
    no_tui: bool,
    db_url: str | None,
) -> None:
    """List stored runs, newest first; with --scenario, its trends and change points."""
    if ctx.invoked_subcommand is not None:
        return
    if status is not None:
        if scenario is not None:
            raise UsageError("--status lists runs: give it without --scenario")
        runs_in_state(status, limit=limit, as_json=as_json, db_url=db_url)
        return
    if not no_tui and not as_json and terminal.interactive():
        from tracker.cli.screens import history_screen

        history_screen(scenario, limit=limit, fail_on_change=fail_on_change, db_url=db_url)
        return
    history(scenario, limit=limit, as_json=as_json, fail_on_change=fail_on_change, db_url=db_url)


@group.command("ack")
@click.argument("run_spec", metavar="RUN")
@click.option("--metric", default=None, help="The metric whose change to accept [all at RUN].")
@click.option("--note", default=None, help="Why, e.g. 'batching trades p99 for throughput'.")
@db_option
def ack_command(run_spec: str, metric: str | None, note: str | None, db_url: str | None) -> None:
    """Accept the change point at RUN (the first run of the new level): it stops alerting."""
    ack(run_spec, metric=metric, note=note, db_url=db_url)


def runs_in_state(status: str, *, limit: int | None, as_json: bool, db_url: str | None) -> None:
    """`history --status STATE`: the runs in that state, newest first (plain text)."""
    from tracker.store import Store

    store = Store.open(db_url, for_reading=True)
    _print_runs(store, store.list_runs(limit or 20, status=status), as_json)


def _print_runs(store: Store, runs: list[RunRecord], as_json: bool) -> None:
    from tracker.reports.history_text import render_run_list, run_json

    if as_json:
        click.echo(json.dumps([run_json(r) for r in runs], indent=2))
    else:
        click.echo(render_run_list(runs, store.location))


def history(
    scenario: str | None,
    *,
    limit: int | None,
    as_json: bool,
    fail_on_change: bool,
    db_url: str | None,
) -> None:
    from tracker.regressions.history import SERIES_LIMIT, find_scenario, scenario_history
    from tracker.reports.history_text import render_history
    from tracker.store import Store

    store = Store.open(db_url, for_reading=True)
    if scenario is None:
        _print_runs(store, store.list_runs(limit or 20), as_json)
        return
    result = scenario_history(store, find_scenario(store, scenario), limit=limit or SERIES_LIMIT)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else render_history(result))
    if fail_on_change and any(c.alerts for c in result.changes):
        sys.exit(EXIT_REGRESSION)


def ack(run_spec: str, *, metric: str | None, note: str | None, db_url: str | None) -> None:
    from tracker.regressions.history import acknowledge
    from tracker.store import Store

    store = Store.open(db_url)
    run = store.get_run(run_spec)
    done = acknowledge(store, run, metric, note)
    if done:
        click.echo(f"accepted the change of {', '.join(done)} at run {run.id}")
    else:
        click.echo(f"already accepted at run {run.id}")
