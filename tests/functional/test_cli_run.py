"""`perfsleuth run` end to end: the real CLI, the real example server, a real SQLite file."""

from __future__ import annotations

import json
import signal
import sqlite3
import time

import pytest
from cli_helpers import perfsleuth, read_until_counted, show_json, start_perfsleuth
from support.llm_server import free_port, running_llm_server

PERCENTILE_KEYS = {"p50", "p90", "p95", "p99", "p999", "max", "mean"}
STREAM_BODY = json.dumps({"prompt": "one two three four", "max_tokens": 8, "stream": True})


@pytest.fixture(scope="module")
def server():
    with running_llm_server() as handle:
        yield handle


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _stream_run(server, db, tmp_path, *extra):
    out = tmp_path / "run.json"
    done = perfsleuth(
        "run",
        "--url",
        f"{server.url}/v1/completions",
        "--rate",
        "4",
        "--duration",
        "4s",
        "--body",
        STREAM_BODY,
        "--stream",
        "sse",
        "--attach",
        str(server.pid),
        "--json",
        str(out),
        "--db",
        db,
        *extra,
        cwd=tmp_path,
    )
    return done, out


def test_streaming_run_is_stored_and_matches_the_json_contract(server, db, tmp_path):
    done, out = _stream_run(server, db, tmp_path, "--tag", "nightly")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # One progress line per second of load, then the summary on stdout.
    assert sum(1 for line in done.stderr.splitlines() if line.startswith("[")) >= 4
    assert "latency (corrected)" in done.stdout
    doc = json.loads(out.read_text())
    for key in (
        "run_id",
        "status",
        "scenario",
        "tag",
        "started_at",
        "duration_s",
        "requests",
        "target_rate_rps",
        "throughput_rps",
        "latency_ms",
        "latency_uncorrected_ms",
        "llm",
        "driver",
        "probes",
        "probes_unavailable",
        "findings",
    ):
        assert key in doc, key
    assert doc["status"] == "completed" and doc["tag"] == "nightly"
    assert doc["target_rate_rps"] == 4.0
    req = doc["requests"]
    assert req["total"] >= 14 and req["errors"] == 0 and req["error_rate"] == 0.0
    assert {"timeout", "connect", "http_5xx", "http_4xx", "protocol"} <= set(req["errors_by_class"])
    assert set(doc["latency_ms"]) >= PERCENTILE_KEYS
    assert set(doc["latency_uncorrected_ms"]) >= PERCENTILE_KEYS
    llm = doc["llm"]
    assert llm["output_tokens"] == 8 * req["ok"]
    assert 0 < llm["ttft_ms"]["p50"] < doc["latency_uncorrected_ms"]["p50"]
    assert llm["itl_ms"]["p50"] > 0 and llm["tpot_ms"]["p50"] > 0
    assert llm["output_tokens_per_s"] > 0
    assert set(doc["driver"]) >= {"schedule_lag_ms", "saturated"}
    assert doc["environment"]["event_loop"] == "uvloop"  # installed with perfsleuth
    probes = doc["probes"]
    for name in (
        "cpu.ctx_switches_voluntary_per_s",
        "cpu.ctx_switches_involuntary_per_s",
        "cpu.process_pct",
        "mem.rss_mb",
        "disk.write_iops",
    ):
        assert name in probes, name
        assert set(probes[name]) == {"mean", "max", "unit"}
    assert probes["cpu.process_pct"]["mean"] > 5  # the engine thread works while serving
    assert probes["mem.rss_mb"]["mean"] > 10

    # The store holds the windows (one per second) and the 4 Hz probe samples.
    path = db.removeprefix("sqlite:///")
    con = sqlite3.connect(path)
    windows = con.execute(
        "select count(*), sum(ok) from windows where run_id=?", (doc["run_id"],)
    ).fetchone()
    samples = con.execute(
        "select count(*) from probe_samples where run_id=?", (doc["run_id"],)
    ).fetchone()
    assert windows[0] >= 4 and windows[1] == req["ok"]
    assert samples[0] >= 12

    # `show --json` reads the same document back from the store.
    assert show_json(db, str(doc["run_id"]), tmp_path) == doc
    assert show_json(db, "latest", tmp_path) == doc
    shown = perfsleuth("show", "latest", "--db", db, cwd=tmp_path)
    assert shown.returncode == 0 and f"run {doc['run_id']}" in shown.stdout


def test_closed_model_non_streaming(server, db, tmp_path):
    out = tmp_path / "closed.json"
    done = perfsleuth(
        "run",
        "--url",
        f"{server.url}/v1/inference",
        "--users",
        "2",
        "--duration",
        "3s",
        "--body",
        json.dumps({"prompt": "hi there", "max_tokens": 4}),
        "--json",
        str(out),
        "--db",
        db,
        cwd=tmp_path,
        env={"PERFSLEUTH_EVENT_LOOP": "asyncio"},
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["environment"]["event_loop"] == "asyncio"
    assert doc["target_rate_rps"] is None
    assert doc["requests"]["ok"] >= 4
    assert doc["llm"]["output_tokens"] == 4 * doc["requests"]["ok"]  # read from the JSON body
    # No schedule in a closed model: corrected and uncorrected latency agree.
    assert doc["latency_ms"]["p50"] == pytest.approx(doc["latency_uncorrected_ms"]["p50"], rel=0.05)


@pytest.mark.parametrize(("limit", "code"), [(None, 4), ("0", 0)])
def test_http_errors_are_classified_and_fail_the_run_past_the_limit(
    server, db, tmp_path, limit, code
):
    out = tmp_path / "err.json"
    done = perfsleuth(
        "run", "--url", f"{server.url}/no/such/path", "--rate", "5", "--duration", "2s",
        "--json", str(out), "--db", db,
        *(["--max-error-rate", limit] if limit is not None else []),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    doc = json.loads(out.read_text())
    assert doc["requests"]["errors"] == doc["requests"]["total"] >= 8
    assert doc["requests"]["errors_by_class"]["http_4xx"] == doc["requests"]["errors"]
    assert doc["requests"]["error_rate"] == 1.0
    if code == 4:  # by default more than half failing fails the run, and says why
        assert doc["status"] == "failed"
        assert "100% of" in doc["error"] and "(mostly http_4xx" in doc["error"]
        assert "--max-error-rate" in done.stdout + done.stderr
    else:
        assert doc["status"] == "completed" and doc["error"] is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_keeps_the_run(server, db, tmp_path, signum):
    def as_in_a_terminal() -> None:  # not as this test may run: under nohup, say
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    proc = start_perfsleuth(
        "run",
        "--url",
        f"{server.url}/v1/completions",
        "--rate",
        "4",
        "--duration",
        "60s",
        "--body",
        STREAM_BODY,
        "--stream",
        "sse",
        "--db",
        db,
        cwd=tmp_path,
        preexec_fn=as_in_a_terminal,
    )
    try:
        seen = read_until_counted(proc, "ok", 4)  # once it has answers, however slow to start
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
        stderr = seen + stderr
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "interrupted"
    assert doc["requests"]["ok"] >= 4
    assert doc["duration_s"] < 30


def test_under_nohup_a_hangup_does_not_stop_the_run(server, db, tmp_path):
    def as_nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = start_perfsleuth(
        "run", "--url", f"{server.url}/v1/completions", "--rate", "4", "--duration", "4s",
        "--body", STREAM_BODY, "--stream", "sse", "--db", db, cwd=tmp_path,
        preexec_fn=as_nohup,
    )  # fmt: skip
    try:
        seen = read_until_counted(proc, "ok", 2)
        proc.send_signal(signal.SIGHUP)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, seen + stderr
    assert show_json(db, "latest", tmp_path)["status"] == "completed"


def _wait_until_listening(port: int, timeout_s: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            time.sleep(0.05)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_a_server_that_dies_mid_run_fails_it_and_is_not_called_contention(db, tmp_path, arrival):
    # Python's own http.server, not attached: all perfsleuth sees is that it stops answering.
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_listening(port)
        proc = start_perfsleuth(
            "run", "--url", f"http://127.0.0.1:{port}/", "--rate", "10", "--arrival", arrival,
            "--duration", "10s", "--json", str(tmp_path / "run.json"), "--db", db, cwd=tmp_path,
        )  # fmt: skip
        try:
            read_until_counted(proc, "ok", 20)
            server.kill()
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    finally:
        server.kill()
        server.wait(timeout=10)
    assert proc.returncode == 4, stderr
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["status"] == "failed"
    assert "the target stopped answering at" in doc["error"], doc["error"]
    assert doc["requests"]["errors_by_class"]["connect"] > 0
    gone_at = float(doc["error"].split("stopped answering at ")[1].split("s")[0])
    assert all(f["end_s"] <= gone_at for f in doc["findings"]), doc["findings"]
    assert "Traceback" not in stderr


def test_launched_target_dying_mid_run_is_survived(db, tmp_path):
    import sys
    from pathlib import Path

    import psutil

    port = free_port()  # outside the ephemeral range: no connection takes it meanwhile
    server = Path(__file__).resolve().parents[2] / "examples" / "llm_server.py"
    proc = start_perfsleuth(
        "run", "--url", f"http://127.0.0.1:{port}/v1/inference", "--rate", "5", "--duration", "6s",
        "--body", json.dumps({"prompt": "x", "max_tokens": 2}),
        "--launch", f"{sys.executable} {server} --host 127.0.0.1 --port {port}",
        "--db", db, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        victim = None
        while victim is None and time.monotonic() < deadline:
            for child in psutil.Process(proc.pid).children(recursive=True):
                if "llm_server.py" in " ".join(child.cmdline()):
                    victim = child
            time.sleep(0.2)
        assert victim is not None, "the launched server never appeared"
        # Kill it once the load has had answers (at 5 req/s, most of the 6 s are left).
        read_until_counted(proc, "ok", 5)
        victim.kill()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # The run goes on and is kept, but a target that died fails it (exit 4).
    assert proc.returncode == 4, stderr
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "failed"
    assert "target process died" in doc["error"]
    assert doc["requests"]["ok"] >= 5
    assert doc["requests"]["errors_by_class"]["connect"] >= 3
    assert any("killed" in e["note"] or "exit" in e["note"] for e in doc["probe_events"])


def test_a_launched_server_dies_with_a_killed_perfsleuth(db, tmp_path):
    # SIGKILL cannot be caught: the kernel ends the launched server (PR_SET_PDEATHSIG),
    # which would otherwise keep running, and keep its port, in a session of its own.
    import sys
    from pathlib import Path

    import psutil

    port = free_port()
    server = Path(__file__).resolve().parents[2] / "examples" / "llm_server.py"
    proc = start_perfsleuth(
        "run", "--url", f"http://127.0.0.1:{port}/v1/inference", "--rate", "5", "--duration", "60s",
        "--body", json.dumps({"prompt": "x", "max_tokens": 2}),
        "--launch", f"{sys.executable} {server} --host 127.0.0.1 --port {port}",
        "--db", db, cwd=tmp_path,
    )  # fmt: skip
    try:
        read_until_counted(proc, "ok", 3)
        launched = [
            c
            for c in psutil.Process(proc.pid).children()
            if "llm_server.py" in " ".join(c.cmdline())
        ]
        assert len(launched) == 1
        proc.kill()
        proc.wait(timeout=10)
        _, alive = psutil.wait_procs(launched, timeout=15)
    finally:
        proc.kill()
    for survivor in alive:
        survivor.kill()
    assert not alive, "the launched server outlived perfsleuth"


@pytest.mark.timeout(120)
def test_a_killed_run_is_abandoned_usable_as_a_baseline_and_prunable(server, db, tmp_path):
    url = f"{server.url}/v1/completions"
    load = ["--url", url, "--rate", "5", "--body", STREAM_BODY, "--stream", "sse", "--db", db]
    proc = start_perfsleuth("run", *load, "--duration", "60s", cwd=tmp_path)
    try:
        read_until_counted(proc, "ok", 10)
        time.sleep(1.0)  # the writer's next batch (every 0.5 s) reaches the store
        proc.kill()  # SIGKILL: nothing can be stored at the end
        proc.wait(timeout=10)
    finally:
        proc.kill()
    killed = show_json(db, "latest", tmp_path)
    assert killed["status"] == "abandoned" and killed["requests"]["ok"] >= 5
    listed = perfsleuth("history", "--status", "abandoned", "--db", db, cwd=tmp_path)
    assert listed.returncode == 0 and "abandoned" in listed.stdout, listed.stdout

    # It holds data: it can be the baseline of the next run.
    again = perfsleuth("run", *load, "--duration", "3s", "--json", "-", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    compared = perfsleuth(
        "compare", "latest", "--baseline", str(killed["run_id"]), "--format", "json",
        "--db", db, cwd=tmp_path,
    )  # fmt: skip
    assert compared.returncode in (0, 1), compared.stderr
    assert json.loads(compared.stdout)["baseline"]["run_ids"] == [killed["run_id"]]

    dry = perfsleuth("db", "prune", "--dry-run", "--db", db, cwd=tmp_path)
    assert f"would remove run {killed['run_id']}" in dry.stdout
    pruned = perfsleuth("db", "prune", "--db", db, cwd=tmp_path)
    assert pruned.returncode == 0 and f"removed run {killed['run_id']}" in pruned.stdout
    gone = perfsleuth("show", str(killed["run_id"]), "--db", db, cwd=tmp_path)
    assert gone.returncode == 2 and f"no run {killed['run_id']}" in gone.stderr
    assert show_json(db, "latest", tmp_path)["status"] == "completed"  # the other one stays


def test_a_space_in_the_url_is_sent_percent_encoded(db, tmp_path):
    # Python's http.server serves the file "a b.txt" only if the request line carries
    # /a%20b.txt: a raw space would split the request line and get a 400.
    import subprocess
    import sys

    (tmp_path / "a b.txt").write_text("hello\n")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_until_listening(port)
        done = perfsleuth(
            "run", "--url", f"http://127.0.0.1:{port}/a b.txt?q=x y", "--rate", "5",
            "--duration", "1s", "--json", "-", "--db", db, cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.terminate()
        _, log = server.communicate(timeout=10)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["requests"]["ok"] == doc["requests"]["total"] >= 4
    assert '"GET /a%20b.txt?q=x%20y HTTP/1.1" 200' in log
