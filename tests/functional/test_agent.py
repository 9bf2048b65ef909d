"""`perfsleuth agent` as a separate process (as if on another host) watching real
servers on loopback: the token, the sample stream (several drivers, late ones), the
target's death and return, TLS, and a prompt clean stop."""

from __future__ import annotations

import itertools
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.agent import TOKEN, http_server, running_agent, self_signed


def _headers(token: str | None = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _stream(url: str, seconds: float, **kwargs: object) -> list[dict]:
    """The stream's lines for `seconds` (bounded: it stops by itself)."""
    lines: list[dict] = []
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", f"{url}/v1/samples", timeout=10, **kwargs) as response:  # type: ignore[arg-type]
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(json.loads(line))
            if time.monotonic() > deadline:
                break
    return lines


def test_the_token_is_required_and_checked(tmp_path: Path) -> None:
    with running_agent(cwd=tmp_path) as agent:
        for headers in ({}, _headers("wrong-token-of-some-length"), {"Authorization": TOKEN}):
            for path in ("/v1/hello", "/v1/clock", "/v1/samples"):
                answer = httpx.get(f"{agent.url}{path}", headers=headers, timeout=10)
                assert answer.status_code == 401 and answer.content == b"", (path, headers)
        hello = httpx.get(f"{agent.url}/v1/hello", headers=_headers(), timeout=10).json()
        assert hello["protocol"] == 1 and hello["target"] is None
        code, stderr = agent.stop()
    assert code == 0
    assert TOKEN not in stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--listen", "0.0.0.0:7207"], {}, "drivers must send a token"),
        (["--listen", "[::]:7207"], {}, "drivers must send a token"),
        (["--token-env", "NO_SUCH_VAR_HERE"], {}, "$NO_SUCH_VAR_HERE is not set"),
        ([], {"PERFSLEUTH_AGENT_TOKEN": "short"}, "at least 16 characters"),
        (["--listen", "127.0.0.1:http"], {}, "is not HOST:PORT"),
        (["--tls-cert", "c.pem"], {}, "--tls-cert and --tls-key go together"),
        (["--tls-cert", "/dev/null", "--tls-key", "/dev/null"], {}, "not a certificate"),
        (["123", "--name", "x"], {}, "at most one of PID, --name and --launch"),
        (["--name", "no-process-has-this-name-7f2c"], {}, "no process name or command line"),
        (["--launch", 'python "unterminated'], {}, "check its quotes"),
    ],
)
def test_bad_agent_input_is_one_line_and_exit_2(tmp_path, args, env, needle) -> None:
    clean = {k: v for k, v in os.environ.items() if k != "PERFSLEUTH_AGENT_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "agent", *args],
        cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "short" not in lines[0] or "short" in needle


def test_samples_stream_to_several_drivers_and_a_late_one(tmp_path: Path) -> None:
    with (
        http_server(tmp_path, "agent-target-a1") as server,
        running_agent(str(server.pid), cwd=tmp_path) as agent,
    ):
        import threading

        first: list[dict] = []
        reader = threading.Thread(
            target=lambda: first.extend(_stream(agent.url, 3.0, headers=_headers()))
        )
        reader.start()
        time.sleep(1.0)
        late = _stream(agent.url, 2.0, headers=_headers())
        reader.join(timeout=30)
    for lines in (first, late):
        assert lines[0]["type"] == "status"
        assert lines[0]["target"].endswith(f"[{server.pid}]")
        assert lines[0]["target_alive"] is True
        samples = [line for line in lines if line["type"] == "sample"]
        assert len(samples) >= 3
        seqs = [s["seq"] for s in samples]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        # Each sample measured the interval since the one before.
        assert all(b["start"] == a["end"] for a, b in itertools.pairwise(samples))
        # About 250 ms each; longer where a busy machine made the sampler skip a tick.
        assert all(0.15 < s["end"] - s["start"] < 3.0 for s in samples[1:])
        assert "cpu.process_pct" in samples[-1]["metrics"]
        assert "cpu.host_pct" in samples[-1]["metrics"]
    # The late driver got samples from then on, not the first one's history.
    first_seqs = [s["seq"] for s in first if s["type"] == "sample"]
    late_seqs = [s["seq"] for s in late if s["type"] == "sample"]
    assert late_seqs[0] > first_seqs[0] + 2


def test_the_agent_outlives_its_target_and_follows_it_by_name(tmp_path: Path) -> None:
    marker = "agent-target-b2"
    with (
        http_server(tmp_path, marker) as server,
        running_agent("--name", marker, cwd=tmp_path) as agent,
    ):
        import threading

        lines: list[dict] = []
        reader = threading.Thread(
            target=lambda: lines.extend(_stream(agent.url, 6.0, headers=_headers()))
        )
        reader.start()
        time.sleep(1.0)
        server.kill()
        server.wait(timeout=10)
        time.sleep(1.5)
        with http_server(tmp_path, marker) as again:
            reader.join(timeout=30)
            code, _ = agent.stop()
    assert code == 0
    samples = [line for line in lines if line["type"] == "sample"]
    notes = [s["note"] for s in samples if s["note"]]
    # The death is noted; its reason depends on who looks first: "killed by signal
    # SIGKILL" (the zombie, before this test reaps it), "exited" or "vanished" (after).
    assert any(n.startswith("target ") and "host metrics continue" in n for n in notes), notes
    dead = [s for s in samples if not s["target_alive"]]
    assert dead and all("cpu.host_pct" in s["metrics"] for s in dead)  # the host goes on
    assert any(f"is back: following pid {again.pid}" in n for n in notes), notes
    back = next(i for i, s in enumerate(samples) if s["note"] and "is back" in s["note"])
    assert samples[back]["start"] is None  # a new target's first sample measured nothing
    assert samples[-1]["target_alive"] is True
    # A status line comes whenever it changes (a probe found unavailable, too): the
    # target's life reads alive, dead, alive again.
    alive = [line["target_alive"] for line in lines if line["type"] == "status"]
    assert [a for a, _ in itertools.groupby(alive)] == [True, False, True], alive


def test_tls_and_a_prompt_stop_with_a_driver_connected(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with running_agent("--tls-cert", str(cert), "--tls-key", str(key), cwd=tmp_path) as agent:
        assert agent.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        lines = _stream(agent.url, 1.0, headers=_headers(), verify=trusted)
        assert any(line["type"] == "sample" for line in lines)
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is not trusted
            httpx.get(f"{agent.url}/v1/hello", headers=_headers(), timeout=10)
        with httpx.stream(
            "GET", f"{agent.url}/v1/samples", headers=_headers(), verify=trusted, timeout=10
        ) as open_stream:
            assert open_stream.status_code == 200
            started = time.monotonic()
            code, stderr = agent.stop()
            stopped_in = time.monotonic() - started
    assert code == 0, stderr
    assert stopped_in < 10  # the open stream is ended, not waited for
    assert "perfsleuth agent: stopped" in stderr
