"""CpuProbe against real CPU hogs, sleepers and contention on one core."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from support.processes import Spawn

from probes import CpuProbe, Target

# nice -19 (we run as root; ignored otherwise) so that other processes on a busy
# CI box barely take CPU from the test processes and blur the numbers.
PRELUDE = """
import os, sys, threading, time
with __import__("contextlib").suppress(PermissionError):
    os.nice(-19)
if len(sys.argv) > 1:
    os.sched_setaffinity(0, {int(sys.argv[1])})
"""
HOG = PRELUDE + "while True:\n    pass\n"
# Busy non-main thread: its context switches are invisible in /proc/<pid>/status.
BUSY_THREAD = (
    PRELUDE
    + """
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
time.sleep(60)
"""
)
SLEEPY_THREAD = (
    PRELUDE
    + """
def nap():
    while True:
        time.sleep(0.002)
threading.Thread(target=nap, daemon=True).start()
time.sleep(60)
"""
)
# Idle root that forks a worker burning 0.4 s of CPU once told to.
FORKS_BURNER = (
    PRELUDE
    + """
import subprocess
sys.stdin.readline()
burn = (
    "import time\\ne = time.process_time() + 0.4\\n"
    "while time.process_time() < e: pass\\ntime.sleep(30)"
)
subprocess.Popen([sys.executable, "-c", burn])
time.sleep(30)
"""
)


def measure(probe: CpuProbe, target: Target, seconds: float) -> dict[str, float]:
    probe.sample(time.monotonic(), target.processes())
    time.sleep(seconds)
    return probe.sample(time.monotonic(), target.processes())


def test_first_sample_is_gauges_only_and_no_target_means_no_tree_metrics() -> None:
    probe = CpuProbe()
    first = probe.sample(time.monotonic(), [])
    assert set(first) == {"cpu.run_queue", "cpu.procs_blocked"}
    assert first["cpu.run_queue"] >= 1
    time.sleep(0.1)
    second = probe.sample(time.monotonic(), [])
    cores = {f"cpu.core{i}_pct" for i in range(os.cpu_count() or 1)}
    assert set(second) == {
        "cpu.run_queue",
        "cpu.procs_blocked",
        "cpu.host_pct",
        "cpu.host_ctx_switches_per_s",
        *cores,
    }
    assert 0 <= second["cpu.host_pct"] <= 100
    assert all(0 <= second[name] <= 100 for name in cores)
    assert second["cpu.host_ctx_switches_per_s"] > 0


def test_busy_single_thread_is_one_core(spawn: Spawn) -> None:
    target = Target.from_pid(spawn(HOG).pid)
    probe = CpuProbe()
    proc = target.processes()[0]
    probe.sample(time.monotonic(), target.processes())
    before, wall = sum(proc.cpu_times()[:2]), time.monotonic()
    time.sleep(1.0)
    metrics = probe.sample(time.monotonic(), target.processes())
    used = (sum(proc.cpu_times()[:2]) - before) / (time.monotonic() - wall) * 100
    # A busy thread takes at most one core; on a shared machine it may get less, so
    # the probe is checked against the CPU time the kernel charged it meanwhile.
    assert 30 <= metrics["cpu.process_pct"] <= 115, metrics
    assert abs(metrics["cpu.process_pct"] - used) <= 15, (metrics, used)
    assert metrics["cpu.threads"] == 1
    assert metrics["cpu.processes"] == 1
    assert metrics["cpu.process_max_pct"] == metrics["cpu.process_pct"]
    assert metrics[f"cpu.pid{proc.pid}_pct"] == metrics["cpu.process_pct"]
    assert metrics["cpu.host_pct"] >= 100 / (os.cpu_count() or 1) * 0.7


def test_a_pinned_hog_shows_on_its_core(spawn: Spawn) -> None:
    cpu = max(os.sched_getaffinity(0))
    target = Target.from_pid(spawn(HOG, str(cpu)).pid)
    time.sleep(0.2)
    metrics = measure(CpuProbe(), target, 0.6)
    assert metrics[f"cpu.core{cpu}_pct"] > 70, metrics


def test_voluntary_switches_of_non_main_threads_are_counted(spawn: Spawn) -> None:
    target = Target.from_pid(spawn(SLEEPY_THREAD).pid)
    time.sleep(0.2)
    metrics = measure(CpuProbe(), target, 0.5)
    # ~2 ms naps: hundreds per second, all on the second thread.
    assert metrics["cpu.ctx_switches_voluntary_per_s"] > 100, metrics
    assert metrics["cpu.threads"] == 2


@pytest.mark.alone  # counts preemptions: another test's load on the core is one
def test_competing_hog_on_same_core_raises_involuntary_switches(spawn: Spawn) -> None:
    cpu = str(max(os.sched_getaffinity(0)))
    target = Target.from_pid(spawn(BUSY_THREAD, cpu).pid)
    probe = CpuProbe()
    time.sleep(0.2)
    # Other processes on a shared box preempt in bursts: keep the quietest window.
    quiet = [measure(probe, target, 0.3) for _ in range(3)]
    alone = min(m["cpu.ctx_switches_involuntary_per_s"] for m in quiet)
    waited_alone = min(m["cpu.run_delay_ms_per_s"] for m in quiet)
    if alone > 60:
        pytest.skip(f"CPU {cpu} already contended by other processes ({alone:.0f} preemptions/s)")
    spawn(HOG, cpu)
    time.sleep(0.2)
    contended = measure(probe, target, 0.8)
    shared = contended["cpu.ctx_switches_involuntary_per_s"]
    assert shared > max(1.5 * alone, alone + 40), (alone, shared)
    assert contended["cpu.process_pct"] < 75, contended  # roughly half a core each
    # Sharing a core, the busy thread waits for it about half of the time (run delay
    # from schedstat): ~500 ms per second, against next to nothing alone.
    waited = contended["cpu.run_delay_ms_per_s"]
    assert waited > max(250, 3 * waited_alone), (waited_alone, waited)


def test_worker_born_between_samples_counts_from_zero(spawn: Spawn) -> None:
    root = spawn(FORKS_BURNER, stdin=subprocess.PIPE)
    assert root.stdin is not None
    target = Target.from_pid(root.pid)
    probe = CpuProbe()
    time.sleep(0.2)
    start = time.monotonic()
    probe.sample(start, target.processes())
    root.stdin.write(b"go\n")
    root.stdin.flush()
    deadline = start + 5
    while time.monotonic() < deadline:
        procs = target.processes()
        if len(procs) == 2 and sum(procs[1].cpu_times()[:2]) >= 0.4:
            break
        time.sleep(0.05)
    end = time.monotonic()
    metrics = probe.sample(end, target.processes())
    cpu_seconds = metrics["cpu.process_pct"] / 100 * (end - start)
    assert cpu_seconds >= 0.35, metrics
