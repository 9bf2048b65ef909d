"""The `perfsleuth` command line: one module per command, each parsing its flags and
calling the layers below; `options` holds the flags several commands share.

Every PerfsleuthError becomes one line on stderr and its exit code (tracker.errors);
nothing prints a traceback unless PERFSLEUTH_DEBUG=1. Start-up stays light: the command
modules import the store, the driver and the screens inside their functions, so
`perfsleuth --help` loads neither SQLAlchemy, Textual nor uvloop.
"""

from __future__ import annotations

import os
import sys
import time

import click

from tracker.cli import agent, attach, compare, db, demo, export, history, run, show
from tracker.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    PerfsleuthError,
    RunFailedError,
)
from tracker.recording import stop_signals
from tracker.store.failures import describe_store_error, is_store_error


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="perfsleuth", prog_name="perfsleuth")
def cli() -> None:
    """Drive load at an HTTP service while watching the server; store, compare, explain."""


for _command in (
    run.command,
    attach.command,
    agent.command,
    demo.command,
    export.command,
    compare.command,
    show.command,
    history.group,
    db.group,
):
    cli.add_command(_command)


def _fail(message: str, code: int) -> None:
    click.echo(f"perfsleuth: error: {message}", err=True)
    sys.exit(code)


def _stop_as_interrupt(signum: int, _frame: object) -> None:
    stop_signals.after_hangup(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    started = time.monotonic()
    # SIGTERM and SIGHUP stop a run the way Ctrl-C does: stored, 130.
    stop_signals.install(_stop_as_interrupt)
    stop_signals.outlive_the_terminal()
    try:
        cli.main(args=argv, prog_name="perfsleuth", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("perfsleuth: aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except PerfsleuthError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        click.echo(f"perfsleuth: interrupted after {time.monotonic() - started:.0f}s", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if os.environ.get("PERFSLEUTH_DEBUG"):
            raise
        if is_store_error(exc):  # named, without the SQL statement or its parameters
            _fail(describe_store_error(exc, None), EXIT_RUN_FAILED)
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (rerun with PERFSLEUTH_DEBUG=1 "
            "for the traceback, and please report it)",
            EXIT_RUN_FAILED,
        )
    sys.exit(EXIT_OK)


__all__ = ["RunFailedError", "cli", "main"]
