"""Files a command writes (`--json`, `--out`) and the exits every run-storing command
shares: paths checked before the run, not after it, and the contract's exit codes."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from tracker.errors import EXIT_INTERRUPTED, UsageError
from tracker.recording.stop_signals import STOP_SIGNALS


def check_parent_dir(path: str | None, flag: str) -> None:
    """Fail before the work, not after it, when `path` cannot be written (`-`: stdout)."""
    if path is None or path == "-":
        return
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise UsageError(f"{flag}: {target} is a directory; name a file in it")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{flag}: directory {parent} does not exist; create it or choose another")


def check_json_path(path: str | None) -> None:
    check_parent_dir(path, "--json")


def write_json(path: str, document: dict[str, Any]) -> None:
    text = json.dumps(document, indent=2, default=str)
    if path == "-":
        click.echo(text)
        return
    try:
        Path(path).write_text(text + "\n")
    except OSError as exc:
        raise UsageError(f"--json: cannot write {path}: {exc.strerror}") from None


def write_out(path: str, text: str) -> None:
    """`--out FILE`: the text with one final newline."""
    try:
        Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out: cannot write {path}: {exc.strerror}") from None


def exit_interrupted() -> NoReturn:
    """Exit 130 after an interrupted run was stored. A Ctrl-C from here on (a second press
    that came late) is ignored: raised while the interpreter shuts down, it would turn the
    exit status into death by SIGINT (-2) and could print a traceback."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(EXIT_INTERRUPTED)
