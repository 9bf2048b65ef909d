"""The environment fingerprint stored with every run, so comparisons can warn about
runs made on different machines (host, CPU model, cores, kernel, Python, versions)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import tracker
from tracker.store.liveness import this_process


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit(cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def fingerprint(cwd: Path | None = None) -> dict[str, Any]:
    """Facts about this machine and software that change what a run measures."""
    return {
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.system(),
        "python": platform.python_version(),
        "perfsleuth": tracker.__version__,
        "git_commit": _git_commit(cwd or Path.cwd()),
        # Not compared across runs: tells a run whose process was killed (`abandoned`).
        "process": this_process(),
    }
