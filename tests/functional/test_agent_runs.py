"""`perfsleuth run --agent URL`: the server's host watched by an agent in another process
(as if on another host, with its own clock), against the example server on loopback:
samples reach the run and the store, labelled by host; the clock skew is measured and
corrected; the agent killed and restarted mid-run leaves a recorded gap; two drivers at
once; bad agents refused before the run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_helpers import perfsleuth, read_until_counted, show_json
from support.agent import TOKEN, http_server, running_agent, self_signed
from support.llm_server import running_llm_server

from tracker import __version__

SKEW_S = 1234.5  # the agent's clock runs this far ahead of the driver's
BODY = json.dumps({"prompt": "hello", "max_tokens": 4})


def _run_args(server_url: str, agent_url: str, db: Path, duration: str = "4s") -> list[str]:
    return [
        "run", "--url", f"{server_url}/v1/inference", "--body", BODY, "--rate", "10",
        "--arrival", "poisson", "--duration", duration, "--agent", agent_url,
        "--db", f"sqlite:///{db}", "--json", "-", "--no-tui",
    ]  # fmt: skip


def _sources(db: Path, run_id: int) -> dict[str | None, list[float]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "select source, t_s from probe_samples where run_id = ? order by t_s", (run_id,)
        ).fetchall()
    finally:
        con.close()
    by_source: dict[str | None, list[float]] = {}
    for source, t_s in rows:
        by_source.setdefault(source, []).append(t_s)
    return by_source


def test_a_run_takes_the_servers_samples_from_its_agent(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with (
        running_llm_server() as server,
        running_agent(
            str(server.pid), cwd=tmp_path, env={"PERFSLEUTH_AGENT_TEST_CLOCK_SKEW_S": str(SKEW_S)}
        ) as agent,
    ):
        done = perfsleuth(
            *_run_args(server.url, agent.url, db), cwd=tmp_path,
            env={"PERFSLEUTH_AGENT_TOKEN": TOKEN},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    doc = json.loads(done.stdout)
    server_host, driver_host = doc["probes_hosts"]
    assert server_host["role"] == "server" and server_host["agent"] == agent.url
    assert server_host["source"].endswith("@" + agent.url.split("//")[1])
    assert driver_host == {**driver_host, "source": "driver", "role": "driver"}
    # The skew is measured (both "hosts" share one clock here, so the truth is known):
    # within 50 ms plus half the round trip of the estimate.
    clock = server_host["clock"]
    assert abs(clock["offset_s"] - SKEW_S) <= 0.05 + clock["uncertainty_s"], clock
    assert clock["estimates"] >= 1
    # The server's metrics are the agent's: its process, seen from its host...
    assert doc["probes"]["cpu.process_pct"]["mean"] > 1
    assert server_host["samples"] >= 8 and not server_host["gaps"]
    # ...and the driver's own host is there beside them, with the driver's figures.
    assert (
        "cpu.host_pct" in driver_host["probes"] and "cpu.process_pct" not in driver_host["probes"]
    )
    assert doc["driver"]["cpu_pct"] is not None
    assert doc["probes_unavailable"].get("driver:gpu") and doc["probes_unavailable"].get("gpu")
    # In the store: the server's samples on the run's axis (not 1234 s off), the
    # driver's host labelled.
    by_source = _sources(db, doc["run_id"])
    assert set(by_source) == {None, "driver"}
    assert by_source[None][0] > -1.0 and by_source[None][-1] < 4 + 2.0
    assert (
        show_json(f"sqlite:///{db}", str(doc["run_id"]), tmp_path)["probes_hosts"][0]["clock"]
        == clock
    )


@pytest.mark.timeout(150)
def test_an_agent_killed_and_restarted_mid_run_leaves_a_recorded_gap(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with running_llm_server() as server, running_agent(str(server.pid), cwd=tmp_path) as first:
        port = first.url.rsplit(":", 1)[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracker", *_run_args(server.url, first.url, db, "15s")],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PERFSLEUTH_AGENT_TOKEN": TOKEN},
        )  # fmt: skip
        try:
            read_until_counted(proc, "sent", 30)  # ~3 s in
            first.proc.kill()
            first.proc.wait(timeout=10)
            time.sleep(3)
            with running_agent(str(server.pid), cwd=tmp_path, listen=f"127.0.0.1:{port}") as again:
                stdout, stderr = proc.communicate(timeout=90)
                assert again.stop()[0] == 0
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "lost (" in stderr and "reconnecting" in stderr
    doc = json.loads(stdout)
    assert doc["status"] == "completed"
    gaps = doc["probes_hosts"][0]["gaps"]
    assert len(gaps) == 1, gaps
    gap = gaps[0]
    # Killed for 3 s, then the new agent's start-up and the driver's next try (its pause
    # grows to 5 s at most).
    assert 2.5 <= gap["to_s"] - gap["from_s"] <= 12, gap
    assert any("no samples" in e["note"] for e in doc["probe_events"]), doc["probe_events"]
    # Samples resumed after the gap, to the end.
    samples = _sources(db, doc["run_id"])[None]
    assert any(t > gap["to_s"] + 2 for t in samples)


def test_two_drivers_share_one_agent(tmp_path: Path) -> None:
    results: list[subprocess.CompletedProcess[str]] = []
    with running_llm_server() as server, running_agent(str(server.pid), cwd=tmp_path) as agent:

        def drive(name: str) -> None:
            args = _run_args(server.url, agent.url, tmp_path / f"{name}.db", "3s")
            results.append(perfsleuth(*args, cwd=tmp_path, env={"PERFSLEUTH_AGENT_TOKEN": TOKEN}))

        runs = [threading.Thread(target=drive, args=(name,)) for name in ("a", "b")]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=90)
    assert len(results) == 2
    for done in results:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["probes_hosts"][0]["samples"] >= 6


@pytest.mark.parametrize(
    ("extra", "env", "needle"),
    [
        ([], {}, "refused a token (401); export the agent's token in $PERFSLEUTH_AGENT_TOKEN"),
        ([], {"PERFSLEUTH_AGENT_TOKEN": "wrong-token-0123456789"}, "refused its token (401)"),
        (["--agent-token-env", "NOT_SET_HERE"], {}, "$NOT_SET_HERE is not set"),
        (["--launch", "sleep 60"], {}, "--agent watches the server on its own host"),
    ],
)
def test_agents_that_cannot_serve_are_refused_before_the_run(tmp_path, extra, env, needle):
    db = tmp_path / "r.db"
    with running_agent(cwd=tmp_path) as agent:
        done = perfsleuth(
            "run", "--url", "http://127.0.0.1:1/", "--duration", "1s", "--agent", agent.url,
            *extra, "--db", f"sqlite:///{db}", cwd=tmp_path, env=env,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert not db.exists()


def test_an_unreachable_agent_and_a_token_in_its_url_are_refused(tmp_path: Path) -> None:
    for url, needle in (
        ("http://127.0.0.1:1", "cannot reach the agent at http://127.0.0.1:1"),
        (f"http://u:{TOKEN}@127.0.0.1:1", "give the token in $PERFSLEUTH_AGENT_TOKEN"),
    ):
        done = perfsleuth(
            "run", "--url", "http://127.0.0.1:1/", "--duration", "1s", "--agent", url,
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert needle in done.stderr and TOKEN not in done.stderr


def test_attach_through_an_agent_and_the_target_dying_there(tmp_path: Path) -> None:
    with (
        http_server(tmp_path, "agent-attach-c3") as server,
        running_agent(str(server.pid), cwd=tmp_path) as agent,
    ):
        watched = perfsleuth(
            "attach", "--agent", agent.url, "--duration", "2s", "--json", "-",
            "--db", f"sqlite:///{tmp_path / 'a.db'}", cwd=tmp_path,
            env={"PERFSLEUTH_AGENT_TOKEN": TOKEN},
        )  # fmt: skip
        assert watched.returncode == 0, watched.stderr
        doc = json.loads(watched.stdout)
        assert doc["scenario"].startswith("attach ") and f"[{server.pid}] on " in doc["scenario"]
        assert doc["probes_hosts"][0]["samples"] >= 5 and "cpu.process_pct" in doc["probes"]

        dying = subprocess.Popen(
            [
                sys.executable, "-m", "tracker", "attach", "--agent", agent.url,
                "--duration", "5s", "--json", "-", "--no-tui",
                "--db", f"sqlite:///{tmp_path / 'a.db'}",
            ],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PERFSLEUTH_AGENT_TOKEN": TOKEN},
        )  # fmt: skip
        try:
            time.sleep(2)
            server.kill()
            stdout, stderr = dying.communicate(timeout=60)
        finally:
            dying.kill()
    assert dying.returncode == 4, stderr
    died = json.loads(stdout)
    assert died["status"] == "failed"
    # Its reason as the agent saw it ("killed by signal SIGKILL" while the test has not
    # reaped it yet).
    assert "the target process on " in died["error"], died["error"]
    assert " died during the run (" in died["error"], died["error"]


NEWER_AGENT = json.dumps(
    {"perfsleuth": "9.0.0", "protocol": 99, "hostname": "gpu-box", "interval_s": 0.25,
     "target": None}
)  # fmt: skip


@pytest.mark.parametrize(
    ("hello", "needles"),
    [
        (
            NEWER_AGENT,
            [
                "the agent at gpu-box runs perfsleuth 9.0.0 (agent protocol 99)",
                f"this driver perfsleuth {__version__} (protocol 1)",
            ],
        ),
        ("[1, 2]", ["is not a perfsleuth agent"]),
    ],
    ids=["newer-agent", "not-an-agent"],
)
def test_an_agent_that_speaks_otherwise_is_refused_before_the_run(
    tmp_path: Path, hello: str, needles: list[str]
) -> None:
    import http.server

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = hello.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = perfsleuth(
            "run", "--url", "http://127.0.0.1:1/", "--duration", "1s",
            "--agent", f"http://127.0.0.1:{server.server_port}", cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0]


def test_a_driver_trusts_an_agents_own_ca_through_ssl_cert_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with running_agent("--tls-cert", str(cert), "--tls-key", str(key), cwd=tmp_path) as agent:
        args = ("attach", "--agent", agent.url, "--duration", "1s", "--json", "-", "--db", db)
        untrusted = perfsleuth(*args, cwd=tmp_path, env={"PERFSLEUTH_AGENT_TOKEN": TOKEN})
        trusted = perfsleuth(
            *args, cwd=tmp_path,
            env={"PERFSLEUTH_AGENT_TOKEN": TOKEN, "SSL_CERT_FILE": str(cert)},
        )  # fmt: skip
    assert untrusted.returncode == 2
    assert "its TLS certificate is not trusted here: set $SSL_CERT_FILE" in untrusted.stderr
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["probes_hosts"][0]["samples"] >= 2


def test_two_agents_on_one_host_are_two_sources(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with (
        running_llm_server() as server,
        running_agent(str(server.pid), cwd=tmp_path) as first,
        running_agent(cwd=tmp_path) as second,
    ):  # the second: the host alone
        done = perfsleuth(
            *_run_args(server.url, first.url, db, "3s"), "--agent", second.url, cwd=tmp_path,
            env={"PERFSLEUTH_AGENT_TOKEN": TOKEN},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    server_host, driver_host, other = doc["probes_hosts"]
    assert (server_host["role"], driver_host["role"], other["role"]) == (
        "server",
        "driver",
        "agent",
    )
    # One hostname, two agents: told apart by where they listen.
    assert server_host["hostname"] == other["hostname"]
    assert server_host["source"] != other["source"]
    assert other["source"].endswith("@" + second.url.split("//")[1])
    assert other["samples"] >= 6 and "cpu.host_pct" in other["probes"]
    assert "cpu.process_pct" not in other["probes"]  # it watches no process
    assert f"{other['source']}:gpu" in doc["probes_unavailable"]
    assert set(_sources(db, doc["run_id"])) == {None, "driver", other["source"]}
