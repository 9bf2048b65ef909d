"""`perfsleuth db`: the database schema, upgraded or shown."""

from __future__ import annotations

import click

from tracker.cli.options import db_option


@click.group("db")
def group() -> None:
    """Database schema (upgrade it or show its revision); remove abandoned runs."""


@group.command("upgrade")
@click.option(
    "--force",
    is_flag=True,
    help="Add perfsleuth's tables to a database that holds another application's.",
)
@db_option
def upgrade(force: bool, db_url: str | None) -> None:
    """Migrate the database to the newest schema."""
    from tracker.store import Store
    from tracker.store.database import current_revision

    store = Store.open(db_url, force=force)
    click.echo(f"{store.location} is at revision {current_revision(store.engine)}")


@group.command("current")
@db_option
def current(db_url: str | None) -> None:
    """Print the database's schema revision and the newest one."""
    from tracker.store import Store
    from tracker.store.database import current_revision, head_revision

    store = Store.open(db_url, upgrade=False, for_reading=True)
    revision = current_revision(store.engine)
    head = head_revision()
    state = "up to date" if revision == head else "needs `perfsleuth db upgrade`"
    click.echo(f"{store.location}: revision {revision or 'none'} (newest {head}; {state})")


@group.command("prune")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@db_option
def prune(dry_run: bool, db_url: str | None) -> None:
    """Remove abandoned runs: left `running` by a perfsleuth process that is gone (killed
    by SIGKILL, the OOM killer, a power loss). Runs of other hosts are never touched."""
    from tracker.store import Store

    store = Store.open(db_url)
    abandoned = store.list_runs(1_000_000, status="abandoned")
    if not abandoned:
        click.echo(f"no abandoned runs in {store.location}")
        return
    for run in abandoned:
        if not dry_run:
            store.delete_run(run.id)
        started = run.started_at.strftime("%Y-%m-%d %H:%M")
        verb = "would remove" if dry_run else "removed"
        click.echo(f"{verb} run {run.id} ({run.scenario}, started {started} UTC)")
