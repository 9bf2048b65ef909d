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
        (["demo", "--refresh", "10ms"], "--refresh"),
        (["run", "--url", "http://127.0.0.1:1/", "--refresh", "0s"], "--refresh"),
        (["show", "42"], "no run 42"),
        (["show", "99999999999999999999999"], "not a run id"),
        (["run", "--url", "http://127.0.0.1:1/", "--rate", "inf"], "--rate"),
        (["run", "--url", "http://[::1"], "not a valid URL"),
        (["run", "--url", "http://127.0.0.1:1/", "--probe-interval", "1ms"], "--probe-interval"),
        (["run", "--url", "http://127.0.0.1:1/", "--json", "/no/such/dir/r.json"], "--json"),
        (["run", "--url", "http://127.0.0.1:1/", "--db", "sqlite://"], "in-memory"),
        (["run"], "give a scenario file or --url"),
        (["run", "missing.toml"], "no such scenario file"),
        (["show", "latest", "--db", "sqlite:///no/such/dir/x.db"], "does not exist"),
        (
            ["run", "--url", "http://127.0.0.1:1/", "--db", "sqlite:///no/such/dir/x.db"],
            "does not exist",
        ),
        # Checked before anything runs (issue 18, cases 7 and 9).
        (["run", "--url", "http://127.0.0.1:1/", "--users", "10000000"], "ulimit -n"),
        (
            ["run", "--url", "http://127.0.0.1:1/", "--rate", "5", "--max-inflight", "99999999"],
            "ulimit -n",
        ),
        (
            ["run", "--url", "http://127.0.0.1:1/", "--launch", 'python "unterminated'],
            "check its quotes",
        ),
        (["run", "--url", "http://127.0.0.1:1/", "--method", ""], "--method: empty"),
        (["run", "--url", "http://127.0.0.1:1/", "--json", "."], "is a directory"),
        (["run", "--url", "http://127.0.0.1:1/", "--max-error-rate", "2"], "--max-error-rate"),
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


def test_scenario_file_with_load_flags_is_refused(tmp_path):
    (tmp_path / "s.toml").write_text(
        'name = "s"\nurl = "http://127.0.0.1:1"\n[load]\nrate = 1\nduration = "1s"\n'
        '[[requests]]\npath = "/"\n'
    )
    done = perfsleuth(
        "run", "s.toml", "--rate", "5", "--db", f"sqlite:///{tmp_path / 'r.db'}", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "--rate: a scenario file sets the load" in _one_clean_line(done.stderr)


def test_duration_on_a_scenario_file_with_stages_or_a_longer_warmup_is_refused(tmp_path):
    head = 'name = "s"\nurl = "http://127.0.0.1:1"\n[[requests]]\npath = "/"\n[load]\n'
    (tmp_path / "staged.toml").write_text(head + 'stages = [{ duration = "2s", target = 3 }]\n')
    (tmp_path / "warm.toml").write_text(head + 'rate = 1\nduration = "9s"\nwarmup = "5s"\n')
    db = f"sqlite:///{tmp_path / 'r.db'}"
    for name, message in (
        ("staged.toml", "--duration: the stages of staged.toml set its length"),
        ("warm.toml", "--duration: must be longer than the scenario's warm-up (5s)"),
    ):
        done = perfsleuth("run", name, "--duration", "3s", "--db", db, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert message in _one_clean_line(done.stderr)
    assert not (tmp_path / "r.db").exists()  # refused before the store is opened


def test_a_database_from_a_newer_perfsleuth_is_refused(tmp_path):
    import sqlite3

    db = tmp_path / "new.db"
    assert perfsleuth("db", "upgrade", "--db", f"sqlite:///{db}", cwd=tmp_path).returncode == 0
    con = sqlite3.connect(db)
    con.execute("update alembic_version set version_num = '9999'")
    con.commit()
    con.close()
    done = perfsleuth("history", "--db", f"sqlite:///{db}", cwd=tmp_path)
    assert done.returncode == 2
    assert "newer than this perfsleuth" in _one_clean_line(done.stderr)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello " * 1000)
    done = perfsleuth("history", "--db", f"sqlite:///{tmp_path / 'notes.txt'}", cwd=tmp_path)
    assert done.returncode == 2
    assert "database" in _one_clean_line(done.stderr)


def test_a_launched_command_that_exits_before_serving_is_a_stored_failed_run(tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    done = perfsleuth(
        "run", "--url", f"http://127.0.0.1:{_closed_port()}/", "--duration", "2s",
        "--launch", "false", "--tag", "boot", "--db", db, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 4
    assert "the launched command exited before serving: exited with code 1" in _one_clean_line(
        done.stderr
    )
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "failed" and doc["tag"] == "boot"
    assert "exited before serving" in doc["error"]


def test_sigterm_while_waiting_for_a_launched_target_stores_it_and_leaves_nothing_behind(
    tmp_path,
):
    import signal
    import sys
    import time

    import psutil
    from cli_helpers import start_perfsleuth

    port = _closed_port()
    marker = "perfsleuth-test-sleeper-7f3a"
    proc = start_perfsleuth(
        "run", "--url", f"http://127.0.0.1:{port}/", "--duration", "2s",
        "--launch", f"{sys.executable} -c 'import time; time.sleep(60)' {marker}",
        "--db", f"sqlite:///{tmp_path / 'r.db'}", cwd=tmp_path,
    )  # fmt: skip

    def launched() -> list[psutil.Process]:  # perfsleuth's own command line has it too
        return [
            p for p in psutil.process_iter(["cmdline"])
            if marker in " ".join(p.info["cmdline"] or []) and p.pid != proc.pid
        ]  # fmt: skip

    try:
        # Signalled once the target is launched and waited for, however slowly a busy
        # machine gets there (a fixed 2 s could signal a perfsleuth still starting up).
        deadline = time.monotonic() + 30
        while not launched() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert launched(), "the target was never launched"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "run 1 was interrupted before its load" in stderr
    assert show_json(f"sqlite:///{tmp_path / 'r.db'}", "1", tmp_path)["status"] == "interrupted"
    deadline = time.monotonic() + 10  # the target may take a moment to be reaped
    while launched() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not launched()


def test_an_unknown_event_loop_is_refused_before_the_run(tmp_path):
    done = perfsleuth(
        "run", "--url", "http://127.0.0.1:1/", "--duration", "1s",
        cwd=tmp_path, env={"PERFSLEUTH_EVENT_LOOP": "tokio"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "$PERFSLEUTH_EVENT_LOOP='tokio' is not one of auto, uvloop, asyncio" in _one_clean_line(
        done.stderr
    )
    assert not (tmp_path / "perfsleuth.db").exists()
