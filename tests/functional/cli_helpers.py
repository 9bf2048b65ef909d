"""Run the real `perfsleuth` CLI as a subprocess, the way users and CI jobs do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def perfsleuth(
    *args: str, cwd: Path, timeout: float = 90.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_perfsleuth(
    *args: str, cwd: Path, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tracker", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def read_until_counted(proc: subprocess.Popen[str], column: str, at_least: int) -> str:
    """Read a started `perfsleuth run`'s (or `demo`'s) progress lines from its stderr until
    their `column` ("sent" or "ok") adds up to `at_least`, warm-up windows left out as the
    run's totals leave them: a deadline polled rather than a fixed wait, which a busy
    machine's slow start-up could use up. Returns the lines read."""
    assert proc.stderr is not None
    count = re.compile(rf"^\[\s*\d+s/.*\b{column}\s+(\d+)")
    lines, total = [], 0
    for line in proc.stderr:
        lines.append(line)
        if (m := count.match(line)) is not None and "(warm-up)" not in line:
            total += int(m.group(1))
            if total >= at_least:
                return "".join(lines)
    raise AssertionError(f"the run ended before {at_least} {column}:\n" + "".join(lines))


def show_json(db: str, run: str, cwd: Path) -> dict:
    done = perfsleuth("show", run, "--json", "--db", db, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
