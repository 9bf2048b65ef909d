"""Run the real `perfsleuth` CLI as a subprocess, the way users and CI jobs do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def start_perfsleuth(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tracker", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def show_json(db: str, run: str, cwd: Path) -> dict:
    done = perfsleuth("show", run, "--json", "--db", db, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
