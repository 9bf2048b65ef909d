"""Whether a command may open a Textual screen: used by `run`, `demo`, `attach`,
`history` and `compare` to choose between the TUI and plain text."""

from __future__ import annotations

import sys


def interactive() -> bool:
    """True when stdin, stdout and stderr are all a terminal.

    Textual draws on stderr and reads keys from stdin, and a redirected stdout means a
    script or a CI log wants the text: all three must be the terminal.
    """
    return all(f is not None and f.isatty() for f in (sys.stdin, sys.stdout, sys.stderr))
