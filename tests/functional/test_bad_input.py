"""Bad input: one clear line on stderr, the contract's exit code, never a traceback."""

from __future__ import annotations

import socket

import pytest
from cli_helpers import perfsleuth, show_json


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_clean_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines, "expected an error message"
    return lines[-1]


def test_port_with_no_server_fails_the_run_with_exit_4_and_stores_it(tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    port = _closed_port()
    done = perfsleuth(
        "run", "--url", f"http://127.0.0.1:{port}/", "--duration", "2s", "--db", db, cwd=tmp_path
    )
    assert done.returncode == 4
    line = _one_clean_line(done.stderr)
    assert f"127.0.0.1:{port}" in line and "connect" in line
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "failed" and "connect" in doc["error"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--url", "http://127.0.0.1:1/", "--duration", "ten"], "--duration"),
        (["run", "--url", "http://127.0.0.1:1/", "--duration", "-5s"], "--duration"),
        (["run", "--url", "127.0.0.1:8000"], "http"),
        (["run", "--url", "http://127.0.0.1:1/", "--rate", "-2"], "--rate"),
        (["run", "--url", "http://127.0.0.1:1/", "--body", "{oops"], "--body"),
        (["run", "--url", "http://127.0.0.1:1/", "--attach", "999999999"], "pid"),
        (["demo", "--fault", "disk"], "--fault"),
        (["show", "42"], "no run 42"),
        (["show", "latest", "--db", "sqlite:///no/such/dir/x.db"], "does not exist"),
        (
            ["run", "--url", "http://127.0.0.1:1/", "--db", "sqlite:///no/such/dir/x.db"],
            "does not exist",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, needle):
    if "--db" not in args:
        args = [*args, "--db", f"sqlite:///{tmp_path / 'r.db'}"]
    done = perfsleuth(*args, cwd=tmp_path, timeout=30)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert needle in _one_clean_line(done.stderr)


def test_db_commands(tmp_path):
    db = f"sqlite:///{tmp_path / 'm.db'}"
    before = perfsleuth("db", "current", "--db", db, cwd=tmp_path)
    assert before.returncode == 0 and "none" in before.stdout
    up = perfsleuth("db", "upgrade", "--db", db, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    after = perfsleuth("db", "current", "--db", db, cwd=tmp_path)
    assert "up to date" in after.stdout


def test_default_database_is_in_the_working_directory(tmp_path):
    done = perfsleuth("history", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "perfsleuth.db").exists()
