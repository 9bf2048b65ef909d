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


def test_faults_uss_and_pss(allocator: subprocess.Popen[bytes]) -> None:
    assert allocator.stdin is not None and allocator.stdout is not None
    target = Target.from_pid(allocator.pid)
    probe = MemoryProbe(full_every_s=0.0)
    assert allocator.stdout.readline() == b"ready\n"
    start = time.monotonic()
    before = probe.sample(start, target.processes())
    allocator.stdin.write(b"go\n")
    allocator.stdin.flush()
    assert allocator.stdout.readline() == b"allocated\n"
    end = time.monotonic()
    after = probe.sample(end, target.processes())
    minor = after["mem.minor_faults_per_s"] * (end - start)
    # 200 MiB written page by page: at least 51,200 first-touch faults of 4 KiB pages
    # (fewer only if the kernel backed it with huge pages), none waiting for disk.
    assert minor > 200 * 256 * 0.9 or after["mem.uss_mb"] > 190, after
    assert after["mem.major_faults_per_s"] * (end - start) < 50
    # The block is private to the process: USS and PSS grow with it, like RSS.
    assert after["mem.uss_mb"] - before["mem.uss_mb"] > 180, (before, after)
    assert after["mem.pss_mb"] - before["mem.pss_mb"] > 180, (before, after)
    assert after["mem.uss_mb"] <= after["mem.pss_mb"] <= after["mem.rss_mb"] + 0.01
    assert after["mem.swap_mb"] >= 0


def test_uss_and_pss_are_read_at_the_lower_rate() -> None:
    with Target.launch([sys.executable, "-c", "import time; time.sleep(30)"]) as target:
        probe = MemoryProbe(full_every_s=60.0)
        first = probe.sample(time.monotonic(), target.processes())
        second = probe.sample(time.monotonic(), target.processes())
    assert "mem.uss_mb" in first
    assert second["mem.uss_mb"] == first["mem.uss_mb"]  # repeated, not re-read


def test_no_target_reports_host_only() -> None:
    metrics = MemoryProbe().sample(time.monotonic(), [])
    assert set(metrics) == {"mem.host_used_pct", "mem.host_swap_used_mb"}
