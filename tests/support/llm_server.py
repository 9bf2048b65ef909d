"""Start ``examples/llm_server.py`` as a real subprocess on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = REPO_ROOT / "examples" / "llm_server.py"


@dataclass
class ServerHandle:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class _PortTaken(Exception):
    pass


def free_port() -> int:
    """A loopback TCP port nothing is bound to, for a server that binds it later.

    Picked below the kernel's ephemeral port range where it can be: a port from bind(0)
    lies inside that range, where any connection opened meanwhile (the tests open many)
    may take it as its local port before the server binds it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(50 if low > 2048 else 0):
        port = random.randrange(max(1024, low - 10_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    return proc.returncode


@contextlib.contextmanager
def running_llm_server(
    *args: str, env: dict[str, str] | None = None, timeout: float = 15, warm_up: bool = True
) -> Iterator[ServerHandle]:
    """Run the example server with extra CLI ``args`` until the block exits.

    Waits (at most ``timeout`` seconds) for ``GET /health`` to answer 200, then (``warm_up``)
    sends one tiny streamed completion: the server's first stream pays for lazy imports, which
    would blur timing assertions. The process is always terminated on exit; its output goes
    to a temp log quoted in startup errors.
    """
    for attempt in range(3):
        handle = _start(args, env)
        try:
            _wait_healthy(handle, timeout)
            if warm_up:
                payload = {"prompt": "warm up", "max_tokens": 1, "stream": True}
                httpx.post(handle.url + "/v1/completions", json=payload, timeout=timeout)
        except _PortTaken:
            # Another process grabbed the port between our probe and the server's bind.
            _cleanup(handle)
            if attempt == 2:
                raise
            continue
        except BaseException:
            _cleanup(handle)
            raise
        try:
            yield handle
        finally:
            _cleanup(handle)
        return


def _start(args: tuple[str, ...], env: dict[str, str] | None) -> ServerHandle:
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="llm_server_", suffix=".log")
    cmd = [sys.executable, str(SERVER_SCRIPT), "--host", "127.0.0.1", "--port", str(port), *args]
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    finally:
        os.close(fd)
    return ServerHandle(url=f"http://127.0.0.1:{port}", proc=proc, log_path=Path(log_name))


def _cleanup(handle: ServerHandle) -> None:
    try:
        stop_process(handle.proc)
    finally:
        handle.log_path.unlink(missing_ok=True)


def _wait_healthy(handle: ServerHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if handle.proc.poll() is not None:
                log = handle.log()
                if "address already in use" in log.lower():
                    raise _PortTaken(log)
                raise RuntimeError(f"llm_server exited with {handle.proc.returncode}:\n{log}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(handle.url + "/health").status_code == 200:
                    return
            time.sleep(0.05)
    raise TimeoutError(f"llm_server not healthy after {timeout}s:\n{handle.log()}")
