"""Build the Go test server (tests/support/gc_servers/gcserver.go) offline, or skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SERVER_SOURCE = Path(__file__).resolve().parent / "gc_servers" / "gcserver.go"


def build_go_server(work: Path) -> Path:
    """The built server binary in `work`; skips the test when Go is not installed."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain here (go not on PATH): apt-get install golang-go")
    out = work / "gcserver"
    env = {
        **os.environ,
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
    }
    subprocess.run([go, "build", "-o", str(out), str(SERVER_SOURCE)], cwd=work, env=env,
                   check=True, timeout=120)  # fmt: skip
    return out
