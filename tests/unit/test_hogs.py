"""The external fault generators (tests/support/hogs.py) burn CPU / write, and always stop.

They are what the attribution benchmark and tests start next to a server; a generator that
kept running after its test would skew every later measurement on the machine, so each way
of stopping is checked: the block's end, the deadline, and the caller's death.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.filesystems import on_tmpfs
from support.hogs import cpu_hogs, fsync_writer

TESTS = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def proc_io(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    return {k: int(v) for k, v in (line.split(": ") for line in lines)}


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (orphans in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_cpu_hogs_burn_cpu_as_our_children_and_stop_with_the_block():
    with cpu_hogs(2, max_s=30) as hogs:
        assert hogs.running() == 2
        assert all(ppid(pid) == os.getpid() for pid in hogs.pids)
        time.sleep(0.3)  # past interpreter startup
        before = [cpu_seconds(pid) for pid in hogs.pids]
        time.sleep(1.0)
        burnt = [cpu_seconds(pid) - b for pid, b in zip(hogs.pids, before, strict=True)]
    # Two busy processes on a shared 2-core machine: each should get a good part of a core.
    assert all(b >= 0.2 for b in burnt), burnt
    assert hogs.running() == 0


def test_cpu_hog_stops_by_itself_at_its_deadline():
    with cpu_hogs(1, max_s=0.5) as hogs:
        assert wait_until(lambda: hogs.running() == 0, 5.0)
        assert hogs.procs[0].returncode == 0  # it left on its own, it was not signalled


def test_fsync_writer_reaches_the_disk_within_its_size_bound_and_cleans_up(tmp_path):
    if on_tmpfs(str(tmp_path)):
        pytest.skip("tmp_path is on tmpfs, where fsync does nothing")
    chunk, limit = 16 * 1024, 64 * 1024
    with fsync_writer(tmp_path, chunk_bytes=chunk, max_bytes=limit, max_s=30) as writer:
        assert writer.directory is not None
        assert writer.directory.parent == tmp_path
        pid = writer.pids[0]
        assert ppid(pid) == os.getpid()
        time.sleep(1.0)
        io = proc_io(pid)
        size = writer.files[0].stat().st_size
    # Rewriting the same 64 KiB re-dirties (and so re-counts) its pages only after they were
    # cleaned: far more than 64 KiB sent to storage in a second means each write was synced.
    assert io["syscw"] >= 8, io
    assert io["write_bytes"] >= 8 * limit, io
    assert 0 < size <= limit
    assert writer.running() == 0
    assert not writer.directory.exists()


def test_fsync_writer_stops_by_itself_and_removes_its_file(tmp_path):
    with fsync_writer(tmp_path, writers=2, max_s=0.5) as writer:
        assert wait_until(lambda: writer.running() == 0, 5.0)
        assert [p.returncode for p in writer.procs] == [0, 0]
        assert not any(f.exists() for f in writer.files)


_ORPHANING_PARENT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from support.hogs import cpu_hogs, fsync_writer
with cpu_hogs(1, max_s=60) as hogs, fsync_writer(sys.argv[2], max_s=60) as writer:
    print(json.dumps({"pids": hogs.pids + writer.pids, "file": str(writer.files[0])}), flush=True)
    time.sleep(60)
"""


def test_generators_stop_when_their_parent_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING_PARENT, str(TESTS), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        started = json.loads(parent.stdout.readline())
        pids, file = started["pids"], Path(started["file"])
        assert wait_until(file.exists, 5.0)
        parent.send_signal(signal.SIGKILL)  # no finally, no stop(): only the children's checks
        parent.wait(timeout=5)
        assert wait_until(lambda: all(gone(pid) for pid in pids), 5.0), pids
        assert not file.exists()  # the writer removed its own file on the way out
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_bad_arguments_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="n must be"), cpu_hogs(0):
        pass
    with pytest.raises(ValueError, match="max_s"), cpu_hogs(1, max_s=0):
        pass
    with pytest.raises(ValueError, match="chunk_bytes"), fsync_writer(tmp_path, chunk_bytes=0):
        pass
    with pytest.raises(ValueError, match="writers"), fsync_writer(tmp_path, writers=0):
        pass
    assert list(tmp_path.iterdir()) == []
