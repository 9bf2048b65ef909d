"""`perfsleuth history` and `perfsleuth compare` on a terminal: the checks and the result
the plain commands have, with the history app shown in between.

Imported by `tracker.cli.history` and `tracker.cli.compare` only when a screen is shown. Anything
wrong with the flags or the runs fails before the screen opens, with the plain commands'
messages; the exit code comes from the same computation as without the screen, never from
what the user looked at.
"""

from __future__ import annotations

import sys

import click

from tracker.cli.compare import CompareSettings, exit_code, prepare
from tracker.errors import EXIT_REGRESSION
from tracker.regressions.history import SERIES_LIMIT, find_scenario, scenario_history
from tracker.store import Store
from tracker.tui.compare_view import verdict_line
from tracker.tui.history_app import HistoryApp
from tracker.tui.history_data import Source


def history_screen(
    scenario: str | None, *, limit: int | None, fail_on_change: bool, db_url: str | None
) -> None:
    """The history app; with `fail_on_change`, one line and exit 1 as `history` would."""
    store = Store.open(db_url, for_reading=True)
    key = None if scenario is None else find_scenario(store, scenario)
    source = Source(store, limit=limit or SERIES_LIMIT)
    HistoryApp(source, scenario_key=key).run()
    if key is None or not fail_on_change:
        return
    # Read again after the screen: the verdict is the store's as the command ends.
    history = scenario_history(store, key, limit=source.limit)
    alerts = [c for c in history.changes if c.alerts]
    if not alerts:
        click.echo(f"scenario {history.scenario} ({key[:8]}): no change point to look at")
        return
    where = ", ".join(f"{c.metric} at run {c.run_id}" for c in alerts)
    click.echo(f"scenario {history.scenario} ({key[:8]}): ALERT: {where}")
    sys.exit(EXIT_REGRESSION)


def compare_screen(run_spec: str, settings: CompareSettings, *, db_url: str | None) -> None:
    """The comparison `compare` would report, on the compare screen; then its verdict line
    on stdout and its exit code."""
    store, comparison = prepare(run_spec, settings, db_url)
    source = Source(store, baseline=settings.baseline, options=settings.options())
    key = store.get_run(comparison.run_id).scenario_key
    HistoryApp(source, scenario_key=key, comparison=comparison).run()
    click.echo(verdict_line(comparison.to_json()))
    sys.exit(exit_code(comparison, settings.fail_on_inconclusive))
