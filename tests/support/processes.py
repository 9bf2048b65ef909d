"""Child processes for tests: started in their own process group, always killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start `python -c code *args` in its own process group; kill the group afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(code: str, *args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdin=stdin, start_new_session=True
        )
        procs.append(proc)
        return proc

    try:
        yield _spawn
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
