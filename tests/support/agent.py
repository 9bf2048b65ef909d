"""`perfsleuth agent` as a separate process on loopback, for the agent's tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.llm_server import free_port

TOKEN = "0123456789abcdef-test-token"


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    url: str

    def stop(self) -> tuple[int, str]:
        """SIGTERM it; its exit status and stderr."""
        self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=20)
        return self.proc.returncode, stderr


@contextmanager
def running_agent(
    *args: str,
    token: str | None = TOKEN,
    cwd: Path,
    env: dict[str, str] | None = None,
    listen: str = "127.0.0.1:0",
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Agent]:
    """An agent listening on `listen` (a free port by default); its URL is read from the
    line it prints when it is ready."""
    environ = {k: v for k, v in os.environ.items() if k != "PERFSLEUTH_AGENT_TOKEN"}
    if token is not None:
        environ["PERFSLEUTH_AGENT_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "agent", "--listen", listen, *args],
        cwd=cwd, env={**environ, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"drivers connect to (\S+)", line)
        assert found, line + (proc.stderr.read() if proc.poll() is not None else "")
        yield Agent(proc, found.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@contextmanager
def http_server(cwd: Path, marker: str) -> Iterator[subprocess.Popen[bytes]]:
    """Python's own http.server, its command line carrying `marker` (for --name)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", marker],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    (cwd / marker).mkdir(exist_ok=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl (skips without it)."""
    import pytest

    cert, key = where / "cert.pem", where / "key.pem"
    made = subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate here: {made.stderr.strip()}")
    return cert, key
