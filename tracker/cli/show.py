"""`perfsleuth show`: a stored run as text, or its JSON document."""

from __future__ import annotations

import click

from tracker import reports
from tracker.cli.options import db_option


@click.command("show")
@click.argument("run_spec", metavar="RUN", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the run JSON document.")
@db_option
def command(run_spec: str, as_json: bool, db_url: str | None) -> None:
    """Show a stored run (an id, `latest`, or group:NAME for the runs of `run --group`)."""
    from tracker.documents.stored_run import load_run
    from tracker.store import Store

    doc = load_run(Store.open(db_url, for_reading=True), run_spec).document()
    click.echo(reports.render("run", "json" if as_json else "text", doc))
