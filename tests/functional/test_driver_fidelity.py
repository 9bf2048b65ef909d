"""What the driver measures: SSE errors, connection reuse, stragglers, abandoned requests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
from cli_helpers import perfsleuth, read_until_counted, show_json, start_perfsleuth
from scenario_helpers import run_scenario
from support.sample_app import running_sample_app


@pytest.fixture
def app():
    # A fresh app per test: /count must count this test's requests only.
    with running_sample_app() as url:
        yield url


def _toml(app: str, load: str, path: str, stream: bool = False) -> str:
    sse = 'stream = "sse"\n' if stream else ""
    return f'name = "t"\nurl = "{app}"\n[load]\n{load}\n[[requests]]\npath = "{path}"\n{sse}'


def test_streams_reuse_their_connection(app, tmp_path):
    code, doc, _, err = run_scenario(
        tmp_path, _toml(app, 'users = 1\nduration = "2s"', "/sse?n=3", True)
    )
    assert code == 0, err
    served = httpx.get(app + "/count").json()
    assert served["sse"] == doc["requests"]["ok"] >= 10
    assert served["client_ports"] == 1  # one keep-alive connection for every stream
    assert doc["llm"]["output_tokens"] == 3 * doc["requests"]["ok"]
    assert doc["llm"]["output_tokens_source"] == "usage"


def test_without_usage_the_tokens_are_counted_chunks_and_the_report_says_so(app, tmp_path):
    code, doc, _, err = run_scenario(
        tmp_path, _toml(app, 'users = 1\nduration = "1s"', "/sse?n=4&usage=0", True)
    )
    assert code == 0, err
    assert doc["llm"]["output_tokens"] == 4 * doc["requests"]["ok"] > 0
    assert doc["llm"]["output_tokens_source"] == "chunks"


def test_an_error_event_inside_a_stream_fails_the_request(app, tmp_path):
    code, doc, _, err = run_scenario(
        tmp_path,
        _toml(app, 'users = 1\nduration = "1s"', "/sse?n=2&error=1", True),
        "--max-error-rate",
        "0",  # every request fails, by design
    )
    assert code == 0, err
    req = doc["requests"]
    assert req["ok"] == 0
    assert req["errors_by_class"]["stream_error"] == req["errors"] >= 5


def test_a_straggler_does_not_deflate_throughput(app, tmp_path):
    code, doc, _, err = run_scenario(
        tmp_path, _toml(app, 'rate = 20\nduration = "3s"', "/stall-once?after=55")
    )
    assert code == 0, err
    # The 55th request (at ~2.7 s) takes 1 s: the run drains ~0.7 s past the load,
    # but throughput is measured over the 3 s load phase.
    assert doc["drain_s"] > 0.4
    assert doc["measured_s"] == pytest.approx(3.0, abs=0.05)
    assert doc["throughput_rps"] == pytest.approx(20.0, abs=0.5)


def test_requests_in_flight_at_ctrl_c_are_reported_as_abandoned(app, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    proc = start_perfsleuth(
        "run", "--url", app + "/slow?ms=5000", "--rate", "10", "--duration", "30s",
        "--db", db, cwd=tmp_path,
    )  # fmt: skip
    try:
        # 25 sent (each answered only after 5 s), however long a busy machine takes to
        # start the run: a fixed 3 s wait could leave too few in flight.
        read_until_counted(proc, "sent", 25)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # the second Ctrl-C abandons what is in flight
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "interrupted"
    assert doc["requests"]["abandoned"] >= 20
    assert doc["requests"]["total"] == 0


def test_a_late_ctrl_c_while_exiting_keeps_exit_130():
    # A second Ctrl-C that lands after the run is stored, while the interpreter shuts
    # down (here: from an atexit hook), made the process die of SIGINT (-2) in CI.
    code = (
        "import atexit, os, signal\n"
        "from tracker.cli.output import exit_interrupted\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
        "exit_interrupted()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr


def test_json_to_stdout_is_json_alone(app, tmp_path):
    done = perfsleuth(
        "run", "--url", app + "/ok", "--rate", "10", "--duration", "1s", "--json", "-",
        "--db", f"sqlite:///{tmp_path / 'r.db'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["requests"]["ok"] == 10
    assert "latency (corrected)" in done.stderr
