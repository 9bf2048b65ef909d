"""MemoryProbe against a real process that allocates 200 MiB."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from probes import MemoryProbe, Target

# b"\x01" * n writes every page; bytearray(n) would be lazily zero-mapped.
ALLOCATOR = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
block = b"\\x01" * (200 << 20)
print("allocated", flush=True)
time.sleep(30)
"""


@pytest.fixture
def allocator() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ALLOCATOR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=5)


def test_rss_grows_with_allocation(allocator: subprocess.Popen[bytes]) -> None:
    assert allocator.stdin is not None and allocator.stdout is not None
    target = Target.from_pid(allocator.pid)
    probe = MemoryProbe()
    assert allocator.stdout.readline() == b"ready\n"
    before = probe.sample(time.monotonic(), target.processes())
    allocator.stdin.write(b"go\n")
    allocator.stdin.flush()
    assert allocator.stdout.readline() == b"allocated\n"
    after = probe.sample(time.monotonic(), target.processes())

    assert after["mem.rss_mb"] - before["mem.rss_mb"] > 180, (before, after)
    assert 0 < after["mem.host_used_pct"] <= 100


def test_no_target_reports_host_only() -> None:
    metrics = MemoryProbe().sample(time.monotonic(), [])
    assert set(metrics) == {"mem.host_used_pct"}
