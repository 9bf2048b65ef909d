"""Errors the CLI turns into one clear line and an exit code (DESIGN.md §3).

Every layer raises these instead of printing, so `tracker.cli` is the only place
that decides what the user sees.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3
EXIT_RUN_FAILED = 4


class PerfsleuthError(Exception):
    """An error with a one-line message that says what is wrong and how to fix it."""

    exit_code = EXIT_USAGE


class UsageError(PerfsleuthError):
    """Bad input: a flag, a value, a file or a database URL."""

    exit_code = EXIT_USAGE


class RunFailedError(PerfsleuthError):
    """The run itself could not go on (target unreachable, target would not start)."""

    exit_code = EXIT_RUN_FAILED
