"""Whether a command draws a Textual screen or plain text, and the plumbing for either:
used by `run`, `demo`, `attach`, `history` and `compare`."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

from tracker.errors import UsageError

if TYPE_CHECKING:
    from tracker.recording import ProgressView, RunControl, RunResult
    from tracker.scenario import Scenario

#: The live screen's refresh: faster than the 1 s windows shows nothing new, and past a
#: minute it no longer reads as live.
MIN_REFRESH_S, MAX_REFRESH_S = 0.1, 60.0


def interactive() -> bool:
    """True when stdin, stdout and stderr are all a terminal.

    Textual draws on stderr and reads keys from stdin, and a redirected stdout means a
    script or a CI log wants the text: all three must be the terminal.
    """
    return all(f is not None and f.isatty() for f in (sys.stdin, sys.stdout, sys.stderr))


def wants_tui(plain: bool, refresh_s: float = 1.0) -> bool:
    """The live screen, unless asked for plain lines (`--no-tui`, `--json -`) or any of
    stdin / stdout / stderr is not a terminal (CI logs, pipes, redirections)."""
    if not MIN_REFRESH_S <= refresh_s <= MAX_REFRESH_S:
        raise UsageError(
            f"--refresh: give {MIN_REFRESH_S * 1000:.0f}ms to {MAX_REFRESH_S:.0f}s, e.g. 2s"
        )
    return not plain and interactive()


def target_log(tui: bool) -> IO[bytes] | None:
    """Where a launched command's output goes: a log file under the live screen (it would
    scribble over it), else (None) the terminal, as before."""
    if not tui:
        return None
    # Closed by the caller once the run (and the command) ended.
    return tempfile.NamedTemporaryFile(prefix="perfsleuth-target-", suffix=".log", delete=False)


def run_with_view(
    scenario: Scenario,
    tui: bool,
    execute: Callable[[ProgressView, RunControl | None], RunResult],
    notes: Sequence[str] = (),
    refresh_s: float = 1.0,
) -> RunResult:
    """`execute(progress, control)` under the live screen (`tui`), else with plain progress
    lines; `notes` open the screen's note line."""
    from tracker.recording.progress import ProgressPrinter

    def plain() -> RunResult:
        printer = ProgressPrinter(scenario.load.duration_s)
        try:
            return execute(printer, None)
        finally:
            printer.close()

    if not tui:
        return plain()
    from tracker.tui.screen_link import run_live
    from tracker.tui.state import LiveState

    load = scenario.load
    label = (
        f"closed {load.users or 0} users"
        if load.model == "closed"
        else f"open {load.rate:g} req/s"
        if load.rate
        else "open (staged)"
    )
    state = LiveState(scenario.name, scenario.shown_url, load.duration_s, label)
    for note in notes:
        state.add_note(note)
    return run_live(state, execute, plain=plain, refresh_s=refresh_s)
