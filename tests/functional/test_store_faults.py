"""The store fails mid-run and the run is not lost: a full disk (a real tmpfs filled from
outside), a database locked by another process, the database file deleted. The run goes
on; what could not be written waits and is retried; if the store is still failing at the
end, the whole run document goes to --json and to a file beside the database (or the
working directory), the error names the cause without SQL, and the exit is 4."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import perfsleuth, read_until_counted, show_json, start_perfsleuth
from support.sample_app import running_sample_app

RATE = 20


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str = "8m") -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte."""
    filler = directory / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def _start_run(app: str, db: Path, json_path: Path, cwd: Path, duration_s: int):
    return start_perfsleuth(
        "run", "--url", f"{app}/ok", "--rate", str(RATE), "--duration", f"{duration_s}s",
        "--json", str(json_path), "--db", f"sqlite:///{db}", cwd=cwd,
    )  # fmt: skip


def _windows_requests(db: Path, run_id: int) -> int:
    con = sqlite3.connect(db)
    try:
        (total,) = con.execute(
            "select coalesce(sum(completed), 0) from windows where run_id=? and warmup=0",
            (run_id,),
        ).fetchone()
    finally:
        con.close()
    return int(total)


@pytest.mark.timeout(120)
def test_a_disk_full_for_a_while_loses_nothing(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "disk") as disk, running_sample_app() as app:
        db, out = disk / "runs.db", tmp_path / "run.json"
        proc = _start_run(app, db, out, tmp_path, 10)
        try:
            read_until_counted(proc, "ok", RATE * 2)
            filler = _fill(disk)
            time.sleep(4)  # several windows cannot be written meanwhile
            filler.unlink()
            _, stderr = proc.communicate(timeout=90)
        finally:
            proc.kill()
        assert proc.returncode == 0, stderr
        assert "» the store failed (disk full at" in stderr, stderr  # it did fail meanwhile
        assert "» the store is writable again: nothing was lost" in stderr
        doc = json.loads(out.read_text())
        assert doc["status"] == "completed" and doc["error"] is None, doc["error"]
        # Every request of the run is in the store's windows and in the summary.
        assert doc["requests"]["total"] == _windows_requests(db, doc["run_id"])
        assert doc["requests"]["total"] >= RATE * 9


@pytest.mark.timeout(150)
def test_a_disk_still_full_at_the_end_keeps_the_run_in_a_file(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "disk") as disk, running_sample_app() as app:
        db, out = disk / "runs.db", tmp_path / "run.json"
        proc = _start_run(app, db, out, tmp_path, 6)
        try:
            read_until_counted(proc, "ok", RATE * 2)
            _fill(disk)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 4, stderr
    assert "Traceback" not in stderr and "INSERT" not in stdout + stderr
    doc = json.loads(out.read_text())  # --json is on another filesystem
    assert doc["status"] == "failed"
    assert "disk full at" in doc["error"] and str(db) in doc["error"], doc["error"]
    assert doc["requests"]["total"] >= RATE * 5  # the windows after the disk filled too
    # The same document in the working directory (the disk beside the database is full).
    kept = list(tmp_path.glob("perfsleuth-run-*.json"))
    assert len(kept) == 1 and str(kept[0]) in doc["error"]
    assert json.loads(kept[0].read_text())["requests"] == doc["requests"]


# Another process holds the database's write lock (BEGIN EXCLUSIVE) for argv[2] seconds.
_LOCKER = (
    "import sqlite3, sys, time\n"
    "con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)\n"
    "con.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "con.execute('COMMIT')\n"
)


def _lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    held = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert held.stdout is not None and held.stdout.readline().strip() == "locked"
    return held


@pytest.mark.timeout(150)
def test_a_database_locked_by_another_process_for_a_while_loses_nothing(tmp_path: Path) -> None:
    db, out = tmp_path / "runs.db", tmp_path / "run.json"
    with running_sample_app() as app:
        proc = _start_run(app, db, out, tmp_path, 14)
        try:
            read_until_counted(proc, "ok", RATE * 2)
            # Longer than a write waits for a lock (WRITE_LOCK_WAIT_S): writes fail, are
            # kept and retried, and land once the lock is gone, before the run ends.
            held = _lock(db, 8)
            _, stderr = proc.communicate(timeout=120)
            assert held.wait(timeout=30) == 0
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "» the store failed (database locked by another process at" in stderr, stderr
    assert "» the store is writable again: nothing was lost" in stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "completed", doc["error"]
    # The summary counts every window (it once counted only those written before).
    assert doc["requests"]["total"] == _windows_requests(db, doc["run_id"]) >= RATE * 13
    assert doc["measured_s"] >= 13


@pytest.mark.timeout(150)
def test_a_database_locked_to_the_end_keeps_the_run_in_a_file(tmp_path: Path) -> None:
    db, out = tmp_path / "runs.db", tmp_path / "run.json"
    with running_sample_app() as app:
        proc = _start_run(app, db, out, tmp_path, 6)
        held = None
        try:
            read_until_counted(proc, "ok", RATE * 2)
            held = _lock(db, 120)
            # The run ends while the lock is still held: it does not wait for it.
            stdout, stderr = proc.communicate(timeout=90)
            assert held.poll() is None
        finally:
            proc.kill()
            if held is not None:
                held.kill()
                held.wait()
    assert proc.returncode == 4, stderr
    assert "Traceback" not in stderr and "INSERT" not in stdout + stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed"
    assert f"database locked by another process at {db}" in doc["error"], doc["error"]
    assert doc["requests"]["total"] >= RATE * 5
    kept = list(tmp_path.glob("perfsleuth-run-*.json"))  # beside the database
    assert len(kept) == 1 and str(kept[0]) in doc["error"]
    # Its row could not be finished: with the lock gone, the run reads as abandoned.
    shown = show_json(f"sqlite:///{db}", str(doc["run_id"]), tmp_path)
    assert shown["status"] == "abandoned"


@pytest.mark.timeout(120)
def test_the_database_file_deleted_mid_run_is_not_a_completed_run(tmp_path: Path) -> None:
    (tmp_path / "dbdir").mkdir()
    db, out = tmp_path / "dbdir" / "runs.db", tmp_path / "run.json"
    with running_sample_app() as app:
        proc = _start_run(app, db, out, tmp_path, 5)
        try:
            read_until_counted(proc, "ok", RATE * 2)
            for path in db.parent.glob("runs.db*"):
                os.unlink(path)
            _, stderr = proc.communicate(timeout=90)
        finally:
            proc.kill()
    assert proc.returncode == 4, stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed"
    assert "was deleted or replaced during the run" in doc["error"], doc["error"]
    assert doc["requests"]["total"] >= RATE * 4  # built from the run's own copy
    kept = list(db.parent.glob("perfsleuth-run-*.json"))
    assert len(kept) == 1 and str(kept[0]) in doc["error"]


@pytest.mark.timeout(120)
def test_a_database_locked_before_the_run_is_one_line_after_a_short_wait(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    assert perfsleuth("db", "upgrade", "--db", f"sqlite:///{db}", cwd=tmp_path).returncode == 0
    held = _lock(db, 90)
    try:
        with running_sample_app() as app:
            # Longer than a run's writes wait for a lock (WRITE_LOCK_WAIT_S, 5 s): the run
            # cannot begin, and says so well before the lock goes.
            started = time.monotonic()
            done = perfsleuth(
                "run", "--url", f"{app}/ok", "--rate", str(RATE), "--duration", "2s",
                "--db", f"sqlite:///{db}", cwd=tmp_path, timeout=90,
            )  # fmt: skip
            waited = time.monotonic() - started
        assert held.poll() is None  # still held: the run gave up, it did not get through
        assert waited < 60, waited
    finally:
        held.kill()
        held.wait()
    assert done.returncode == 4, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"perfsleuth: error: cannot start the run: database locked by another process at "
        f"{db} (database is locked)"
    ], done.stderr
    assert "INSERT" not in done.stdout + done.stderr
