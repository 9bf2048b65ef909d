"""The demo's server and load: the example LLM server on a free loopback port, the
streaming scenario driven at it, and the action that switches its fault on.

Used by `perfsleuth demo` (`tracker.cli.demo`). `llm_server.py` ships in the wheel and is
started as a probed child process with the in-process GC agent.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import IO

import httpx

from probes.runtimes import Launch, close_probes, launch_with_gc_probes
from tracker._resources import example_server_path
from tracker.errors import RunFailedError
from tracker.recording.runner import TimedAction
from tracker.scenario import LoadSpec, RequestSpec, Scenario

FAULTS = ("none", "cpu", "gc", "io")
_PROMPT = (
    "Explain, step by step and with a short example, why a service that is fast alone can "
    "become slow under load: queueing, batching, garbage collection and disk writes."
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, timeout_s: float = 30.0, output: IO[bytes] | None = None) -> Launch:
    """Launch the example server (with the GC agent) and wait until /health answers;
    its output goes to `output`, or to the terminal when None."""
    argv = [sys.executable, str(example_server_path()), "--host", "127.0.0.1", "--port", str(port)]
    launched = launch_with_gc_probes(argv, output=output)
    target = launched.target
    url = f"http://127.0.0.1:{port}/health"
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not target.alive:
                raise RunFailedError(f"the example server exited at start ({target.death_reason})")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return launched
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RunFailedError(f"the example server did not answer {url} within {timeout_s:.0f}s")
    except BaseException:
        # Ctrl-C while waiting, or a failed start: never leave the server behind.
        target.terminate()
        close_probes(launched.probes)
        raise


def demo_scenario(port: int, duration_s: float, rate: float) -> Scenario:
    return Scenario(
        name="demo: streaming completions",
        base_url=f"http://127.0.0.1:{port}",
        requests=(
            RequestSpec(
                method="POST",
                path="/v1/completions",
                body={"model": "sim", "prompt": _PROMPT, "max_tokens": 32, "stream": True},
                timeout_s=30.0,
                stream="sse",
                name="completion",
            ),
        ),
        load=LoadSpec(model="open", duration_s=duration_s, rate=rate, warmup_s=2.0),
    )


def fault_action(port: int, fault: str, at_s: float) -> TimedAction:
    async def switch_on() -> str:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.post(
                f"http://127.0.0.1:{port}/admin/fault", json={"fault": fault}
            )
        if response.status_code != 200:
            return f"could not switch fault {fault} on: HTTP {response.status_code}"
        return f"fault '{fault}' switched on at {at_s:.0f}s"

    return TimedAction(at_s, switch_on)
