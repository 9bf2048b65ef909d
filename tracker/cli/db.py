"""`perfsleuth db`: the database schema, upgraded or shown."""

from __future__ import annotations

import click

from tracker.cli.options import db_option


@click.group("db")
def group() -> None:
    """Database schema: upgrade it or show its revision."""


@group.command("upgrade")
@db_option
def upgrade(db_url: str | None) -> None:
    """Migrate the database to the newest schema."""
    from tracker.store import Store
    from tracker.store.database import current_revision

    store = Store.open(db_url)
    click.echo(f"{store.location} is at revision {current_revision(store.engine)}")


@group.command("current")
@db_option
def current(db_url: str | None) -> None:
    """Print the database's schema revision and the newest one."""
    from tracker.store import Store
    from tracker.store.database import current_revision, head_revision

    store = Store.open(db_url, upgrade=False)
    revision = current_revision(store.engine)
    head = head_revision()
    state = "up to date" if revision == head else "needs `perfsleuth db upgrade`"
    click.echo(f"{store.location}: revision {revision or 'none'} (newest {head}; {state})")
