"""Disk probes against a real process doing fsync'd writes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from probes import DiskProbe, ProcessIOProbe, Target
from probes.disk import physical_disks

MIB = 1 << 20

# Writes 1 MiB + fsync in a loop for at most 10 s once told to go.
WRITER = """
import os, sys, time
print("ready", flush=True)
sys.stdin.readline()
chunk = b"x" * (1 << 20)
end = time.monotonic() + 10
with open(sys.argv[1], "wb") as f:
    while time.monotonic() < end:
        f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
"""
# Root whose child writes 32 MiB, waits for a go file, exits and is reaped.
REAPER = """
import subprocess, sys, time
child = '''
import os, sys, time
with open(sys.argv[1], "wb") as f:
    f.write(b"y" * (32 << 20))
    f.flush()
    os.fsync(f.fileno())
print("written", flush=True)
end = time.monotonic() + 10
while not os.path.exists(sys.argv[2]) and time.monotonic() < end:
    time.sleep(0.01)
'''
subprocess.run([sys.executable, "-c", child, sys.argv[1], sys.argv[2]])
print("reaped", flush=True)
time.sleep(30)
"""


def fs_type(path: Path) -> str:
    mounts = psutil.disk_partitions(all=True)
    best = max(
        (m for m in mounts if str(path).startswith(m.mountpoint)),
        key=lambda m: len(m.mountpoint),
    )
    return best.fstype


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    kind = fs_type(tmp_path)
    if kind in {"tmpfs", "ramfs", "overlay"}:
        pytest.skip(f"{tmp_path} is on {kind}: writes there never reach a block device")
    return tmp_path


@pytest.fixture
def writer(disk_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(disk_dir / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"ready\n"
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=5)


def go(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


def test_fsynced_writes_show_as_process_io(writer: subprocess.Popen[bytes]) -> None:
    target = Target.from_pid(writer.pid)
    probe = ProcessIOProbe()
    assert probe.sample(time.monotonic(), target.processes()) == {}
    go(writer)
    time.sleep(1.0)
    metrics = probe.sample(time.monotonic(), target.processes())
    assert probe.unavailable is None
    assert metrics["proc.io_write_mb_per_s"] > 2, metrics
    assert metrics["proc.io_read_mb_per_s"] >= 0
    # One write() per MiB written, plus the interpreter's own few.
    calls = metrics["proc.io_write_syscalls_per_s"]
    assert calls >= metrics["proc.io_write_mb_per_s"] * 0.9, metrics


def test_fsynced_writes_show_as_host_disk_io(writer: subprocess.Popen[bytes]) -> None:
    probe = DiskProbe()
    probe.sample(time.monotonic(), [])
    if probe.unavailable is not None:
        pytest.skip(f"host exposes no disk counters: {probe.unavailable}")
    busy_before = _busy_ms(probe.disks)
    go(writer)
    time.sleep(1.0)
    # The kernel charges busy time (io_ticks) a jiffy at a time, when one finds the disk
    # busy: fsync'd writes of ~0.1 ms on a fast disk, fewer of them when a busy machine
    # slows the writer, once left a second with none charged (util 0.0). So the sample
    # waits (up to 5 s more) until some is.
    deadline = time.monotonic() + 5
    while _busy_ms(probe.disks) <= busy_before and time.monotonic() < deadline:
        time.sleep(0.1)
    metrics = probe.sample(time.monotonic(), [])
    assert metrics["disk.write_iops"] > 5, (probe.disks, metrics)
    assert metrics["disk.write_mb_per_s"] > 2, (probe.disks, metrics)
    # fsync'd writes keep a disk busy and every request takes some time.
    assert 0 < metrics["disk.util_pct"] <= 100, metrics
    assert metrics["disk.await_ms"] > 0, metrics
    per_disk = sum(metrics[f"disk.{name}_write_iops"] for name in probe.disks)
    assert per_disk == pytest.approx(metrics["disk.write_iops"])
    assert max(metrics[f"disk.{name}_util_pct"] for name in probe.disks) == metrics["disk.util_pct"]


def _busy_ms(disks: list[str]) -> int:
    counters = psutil.disk_io_counters(perdisk=True) or {}
    return sum(counters[name].busy_time for name in disks if name in counters)


def test_physical_disks_skip_virtual_devices_and_partitions() -> None:
    names = list(psutil.disk_io_counters(perdisk=True) or {})
    physical = physical_disks([*names, "loop0", "ram0", "zram0", "dm-0", "md0"])
    assert not {"loop0", "ram0", "zram0", "dm-0", "md0"} & set(physical)
    assert all(not os.path.exists(f"/sys/class/block/{n}/partition") for n in physical)


def test_reaped_child_io_is_not_counted_twice(disk_dir: Path) -> None:
    go_file = disk_dir / "go"
    root = subprocess.Popen(
        [sys.executable, "-c", REAPER, str(disk_dir / "data"), str(go_file)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert root.stdout is not None
        target = Target.from_pid(root.pid)
        probe = ProcessIOProbe()
        assert root.stdout.readline() == b"written\n"
        assert len(target.processes()) == 2
        root_written = psutil.Process(root.pid).io_counters().write_bytes
        start = time.monotonic()
        probe.sample(start, target.processes())

        go_file.touch()
        assert root.stdout.readline() == b"reaped\n"
        end = time.monotonic()
        metrics = probe.sample(end, target.processes())
        absorbed = psutil.Process(root.pid).io_counters().write_bytes - root_written
        if absorbed < 30 * MIB:
            pytest.skip("this kernel does not fold reaped children's I/O into the parent")
        written_mib = metrics["proc.io_write_mb_per_s"] * (end - start)
        assert written_mib < 4, metrics  # the child's 32 MiB were counted before it exited
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(root.pid, signal.SIGKILL)
        root.communicate(timeout=5)
