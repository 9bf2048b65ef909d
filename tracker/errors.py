"""Errors that become one clear line and an exit code, and the exit codes themselves.

The contract (docs/json.md, "Exit codes"; README's table) is defined here and nowhere
else. Layers below the command line raise these instead of printing; `tracker.cli.main`
turns each into its one line and code.
"""

from __future__ import annotations

EXIT_OK = 0
#: A regression (`compare`, `run --baseline`), a failed `[slo]` threshold, or an
#: unaccepted change point with `history --fail-on-change`.
EXIT_REGRESSION = 1
EXIT_USAGE = 2
#: The data cannot tell; only with `--fail-on-inconclusive`.
EXIT_INCONCLUSIVE = 3
#: The run itself failed (nothing listens at the URL, the target died); stored as failed.
EXIT_RUN_FAILED = 4
#: Ctrl-C or SIGTERM; the run is stored as interrupted (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class PerfsleuthError(Exception):
    """An error with a one-line message that says what is wrong and how to fix it."""

    exit_code = EXIT_USAGE


class UsageError(PerfsleuthError):
    """Bad input: a flag, a value, a file or a database URL."""

    exit_code = EXIT_USAGE


class RunFailedError(PerfsleuthError):
    """The run itself could not go on (target unreachable, target would not start)."""

    exit_code = EXIT_RUN_FAILED
