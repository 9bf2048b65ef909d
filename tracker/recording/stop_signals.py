"""The signals that stop a run the way Ctrl-C does: the run is finished, stored as
`interrupted`, and the process exits 130.

SIGTERM is CI cancelling a job or a `kill`; SIGHUP is the terminal gone (an SSH connection
dropped, the window closed, `tmux kill-session`). A signal the process started with
ignored stays ignored: under `nohup` SIGHUP must not stop the run.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def handled_stop_signals() -> tuple[signal.Signals, ...]:
    """The stop signals this process reacts to (not those it was started ignoring)."""
    return tuple(s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN)


#: Of stdout and stderr, those that were a terminal at start (once it hangs up,
#: `isatty` fails on it with EIO and can no longer tell).
_terminal_fds: list[int] = []


def install(handler: Callable[[int, Any], Any]) -> None:
    """`handler` for SIGTERM and SIGHUP (SIGINT is Python's KeyboardInterrupt already)."""
    _terminal_fds[:] = [fd for fd in (1, 2) if _isatty(fd)]
    for signum in handled_stop_signals():
        if signum != signal.SIGINT:
            signal.signal(signum, handler)


def after_hangup(signum: int) -> None:
    """After SIGHUP the terminal is gone and writing to it fails (EIO): the summary and
    the exit message go to /dev/null instead, so the run still finishes and is stored."""
    if signum != signal.SIGHUP:
        return
    with open(os.devnull, "w") as devnull:
        for fd in _terminal_fds:
            with contextlib.suppress(OSError):
                os.dup2(devnull.fileno(), fd)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class _TerminalWriter(io.RawIOBase):
    """A terminal's fd that swallows the terminal going away: once a write fails with
    EIO (hung up) the fd is pointed at /dev/null and the bytes count as written."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return _isatty(self._fd)

    def write(self, data: Any) -> int:
        view = memoryview(data)
        try:
            return os.write(self._fd, view)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
        after_hangup(signal.SIGHUP)
        return len(view)


def outlive_the_terminal() -> None:
    """Make `sys.stdout` / `sys.stderr`, where they are a terminal, survive its hangup.

    Under nohup no SIGHUP comes: the first sign of a closed terminal is a write failing
    with EIO, which would turn a run that completed and was stored into an internal error
    (exit 4) at its summary. The streams stay text streams on the same fds."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None or not _isatty(fd) or getattr(stream, "fileno", None) is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            if stream.fileno() != fd:
                continue
            stream.flush()
            wrapped = io.TextIOWrapper(
                io.BufferedWriter(_TerminalWriter(fd)),
                encoding=stream.encoding,
                errors=stream.errors,
                line_buffering=True,
            )
            setattr(sys, name, wrapped)
