"""Process plumbing shared by the benchmark scripts: loopback ports, pinning, stopping
children, and the example LLM server.

Everything here listens on, and talks to, 127.0.0.1 only.

- `free_port`, `wait_port`: a free loopback port; wait (bounded) until something listens.
- `cpus`, `pin_prefix`, `split_cpus`: `taskset` pinning of servers and clients.
- `stop_process`: signal, wait with a grace period, SIGKILL, reap; a process or its group.
- `die_with_parent`: a `preexec_fn` that SIGTERMs the child when this script dies.
- `example_server`: examples/llm_server.py with its flags, on a port it picks itself,
  answered once (warm-up), stopped afterwards; `post_json` for its admin endpoints.
- `find_perfsleuth`, `add_driver_args`: how the drivers find and start `perfsleuth`.

A module of the benchmarks, not of perfsleuth: nothing in tracker/ or probes/ imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"


# -- ports ------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts connections on HOST:port; RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout}s")


# -- pinning ----------------------------------------------------------------------------


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin_prefix(cpu: int | None) -> list[str]:
    """`taskset -c N` (a command prefix), or nothing when not pinning."""
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def split_cpus(pin: bool) -> tuple[int | None, int | None]:
    """(server cpu, client cpu): the server on the first core, load on the last."""
    c = cpus()
    if not pin or len(c) < 2:
        return None, None
    return c[0], c[-1]


# -- stopping children --------------------------------------------------------------------


def stop_process(
    proc: subprocess.Popen[Any],
    sig: int = signal.SIGTERM,
    grace_s: float = 10.0,
    *,
    group: bool = False,
    reap_s: float = 5.0,
) -> None:
    """Send `sig`, wait up to `grace_s` for the process to exit, then SIGKILL it and reap
    it (waiting up to `reap_s`). Nothing is sent to a process that has already exited.

    group=True: the same for the child's whole process group (the child must lead one:
    `start_new_session=True`). The signals go to the group, and whatever of the group is
    still there once its leader has gone (also when the leader had already exited) is
    SIGKILLed.
    """

    def send(s: int) -> None:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, s)
        else:
            proc.send_signal(s)

    if proc.poll() is None:
        send(sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait(timeout=reap_s)
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the leader's leftovers


_PR_SET_PDEATHSIG = 1
# Resolved here, before any fork: a pre-exec hook must only call it (Linux; elsewhere the
# hook does nothing).
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def die_with_parent() -> None:
    """A `preexec_fn`: SIGTERM the child when this script dies, even by SIGKILL, so no
    server, perfsleuth or hog outlives a killed benchmark. Runs between fork and exec."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# -- the example LLM server -------------------------------------------------------------------

SERVER_SCRIPT = REPO / "examples" / "llm_server.py"
# The demo's request (tracker/demo/example_server.py): POST /v1/completions, streamed.
PROMPT = (
    "Explain, step by step and with a short example, why a service that is fast alone can "
    "become slow under load: queueing, batching, garbage collection and disk writes."
)
MAX_TOKENS = 32
BODY: dict[str, Any] = {"model": "sim", "prompt": PROMPT, "max_tokens": MAX_TOKENS, "stream": True}

_LISTENING = re.compile(r"listening on http://[\d.]+:(\d+)")


def post_json(url: str, payload: Mapping[str, Any], timeout_s: float = 10.0) -> bytes:
    """POST `payload` as JSON; the response body (urllib's errors are OSErrors)."""
    data = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


@dataclass
class ExampleServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def wait_listening(proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> int:
    """The port from the server's "listening on http://HOST:PORT" line in `log`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if (m := _LISTENING.search(text)) is not None:
            return int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"the example server exited ({proc.returncode}): {text[-800:]}")
        time.sleep(0.05)
    raise RuntimeError(f"the example server did not listen within {timeout_s:.0f}s")


@contextlib.contextmanager
def example_server(
    workdir: Path,
    flags: Sequence[str] = (),
    *,
    cpu: int | None = None,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    timeout_s: float = 30.0,
) -> Iterator[ExampleServer]:
    """examples/llm_server.py FLAGS on HOST, on a port it picks itself (no race), warmed up;
    SIGTERMed (then killed) on the way out. Its output goes to WORKDIR/server.log.

    `cpu` pins it (taskset); `env` replaces its environment; `new_session` starts it in a
    session of its own, so that a terminal's Ctrl-C reaches this script only. It dies with
    this script in any case (`die_with_parent`).
    """
    log = workdir / "server.log"
    argv = [*pin_prefix(cpu), sys.executable, str(SERVER_SCRIPT), "--host", HOST, "--port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, *flags],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=new_session,
            preexec_fn=die_with_parent,
        )
    try:
        server = ExampleServer(proc, wait_listening(proc, log, timeout_s))
        # The first stream pays for lazy imports: keep it out of the first measured run.
        post_json(server.base_url + "/v1/completions", {**BODY, "max_tokens": 2}, 30.0)
        yield server
    finally:
        stop_process(proc, signal.SIGTERM, 10.0)


# -- perfsleuth -----------------------------------------------------------------------------


def find_perfsleuth(explicit: str | None = None) -> list[str]:
    """How to start perfsleuth: --perfsleuth, this venv's script, PATH, or `-m tracker`."""
    if explicit:
        return [explicit]
    for cand in (Path(sys.executable).parent / "perfsleuth", shutil.which("perfsleuth")):
        if cand and os.access(cand, os.X_OK):
            return [str(cand)]
    return [sys.executable, "-m", "tracker"]


def add_driver_args(ap: argparse.ArgumentParser) -> None:
    """The drivers' shared flags: --perfsleuth PATH and --no-pin."""
    ap.add_argument("--perfsleuth", help="perfsleuth executable (default: found next to python)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server/client to CPUs")
