"""JvmGcProbe against a real JVM (G1, -Xmx64m) serving loopback requests, and real log files.

The server is tests/support/gc_servers/GcServer.java, compiled with the installed JDK.
One JVM per module writes the same GC events to several logs (default decorations,
-Xlog:gc*, extra decorations, none, rotated), so each format is checked against real
output rather than against hand-written samples.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from support.gc_drive import drive, wait_until

from probes.gc.jvm import JvmGcProbe, parse_pause_line

SERVER_SOURCE = Path(__file__).resolve().parents[1] / "support" / "gc_servers" / "GcServer.java"
JAVA, JAVAC, JSTAT = shutil.which("java"), shutil.which("javac"), shutil.which("jstat")
needs_jdk = pytest.mark.skipif(
    JAVA is None or JAVAC is None,
    reason="no JDK here (java/javac not on PATH): apt-get install openjdk-17-jdk-headless",
)
needs_jstat = pytest.mark.skipif(
    JSTAT is None, reason="no jstat on PATH: apt-get install openjdk-17-jdk-headless"
)

# Independent of the probe's parser: a completed pause is a "[gc]"-tagged line that
# ends in a duration. Used on default-decorated logs only.
_LOG_PAUSE = re.compile(r"\]\[gc\s*\] GC\(\d+\) Pause .* (\d+\.\d+)ms$")
LOG_NAMES = ("default.log", "all.log", "decorated.log", "bare.log")


@dataclass
class Jvm:
    proc: subprocess.Popen[bytes]
    port: int
    logs: Path

    def log(self, name: str = "default.log") -> Path:
        return self.logs / name


def logged_pauses(path: Path, start: int = 0) -> list[float]:
    """Pause durations of a default-decorated log, from byte offset ``start``."""
    with path.open("rb") as f:
        f.seek(start)
        text = f.read().decode()
    return [float(m[1]) for m in map(_LOG_PAUSE.search, text.splitlines()) if m]


def reported_total(samples: list[tuple[float, dict[str, float]]], metric: str) -> float:
    """Integrate a per-second rate over the sample intervals."""
    total = 0.0
    for (prev_now, _), (now, metrics) in itertools.pairwise(samples):
        total += metrics.get(metric, 0.0) * (now - prev_now)
    return total


def me() -> list[psutil.Process]:
    """A live "target" for probe tests that only need one (this test process)."""
    return [psutil.Process()]


@pytest.fixture(scope="module")
def jvm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jvm]:
    if JAVA is None or JAVAC is None:
        pytest.skip("no JDK here (java/javac not on PATH): apt-get install openjdk-17-jdk-headless")
    classes = tmp_path_factory.mktemp("gcserver-classes")
    subprocess.run([JAVAC, "-d", str(classes), str(SERVER_SOURCE)], check=True, timeout=60)
    logs = tmp_path_factory.mktemp("gc-logs")
    argv = [
        JAVA,
        "-XX:+UseG1GC",
        "-Xmx64m",
        f"-Xlog:gc:file={logs / 'default.log'}",
        f"-Xlog:gc*:file={logs / 'all.log'}",
        f"-Xlog:gc:file={logs / 'decorated.log'}:time,uptimemillis,pid,tid,level,tags",
        f"-Xlog:gc:file={logs / 'bare.log'}:none",
        f"-Xlog:gc*:file={logs / 'rotated.log'}::filecount=50,filesize=64k",
        "-cp",
        str(classes),
        "GcServer",
        "0",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline().decode() if ready else ""
        assert line.startswith("PORT "), f"the JVM did not start: {line!r}"
        yield Jvm(proc, int(line.split()[1]), logs)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@needs_jdk
def test_log_probe_reports_every_real_g1_pause_of_a_loaded_server(jvm: Jvm) -> None:
    target = [psutil.Process(jvm.proc.pid)]
    log_path = jvm.log()
    assert wait_until(log_path.exists)
    start = log_path.stat().st_size  # idle server: no pause can be half-written now
    probe = JvmGcProbe(str(log_path))
    assert probe.unavailable is None
    assert probe.source == "log"
    samples: list[tuple[float, dict[str, float]]] = []

    def tick() -> None:
        now = time.monotonic()
        samples.append((now, probe.sample(now, target)))

    tick()
    assert samples[0][1] == {}  # first call: no interval, no heap figure yet
    sent = drive(jvm.port, 1.5, tick)
    time.sleep(0.3)
    tick()
    probe.close()

    pauses = logged_pauses(log_path, start)
    assert sent > 50
    assert len(pauses) >= 10, f"{sent} requests caused only {len(pauses)} pauses"
    assert reported_total(samples, "gc.pause_ms_per_s") == pytest.approx(sum(pauses), abs=1e-6)
    assert reported_total(samples, "gc.collections_per_s") == pytest.approx(len(pauses))
    assert max(m["gc.pause_max_ms"] for _, m in samples[1:]) == max(pauses)
    assert all(m["gc.pause_max_ms"] >= 0 for _, m in samples[1:])
    last_line = [ln for ln in log_path.read_text().splitlines() if _LOG_PAUSE.search(ln)][-1]
    after = re.search(r"->(\d+)M\(", last_line)
    assert after is not None
    assert samples[-1][1]["gc.heap_after_mb"] == float(after[1])
    busy = [m for _, m in samples[1:-1]]
    assert sum(1 for m in busy if m["gc.collections_per_s"] > 0) >= len(busy) // 2


@needs_jdk
def test_every_decoration_and_gc_star_yield_the_same_pauses(jvm: Jvm) -> None:
    drive(jvm.port, 0.5, lambda: None)
    time.sleep(0.3)
    parsed = {}
    for name in LOG_NAMES:
        lines = jvm.log(name).read_text().splitlines()
        parsed[name] = [p for p in map(parse_pause_line, lines) if p is not None]
    reference = parsed["default.log"]
    assert len(reference) >= 5
    assert [p.pause_ms for p in reference] == logged_pauses(jvm.log())
    for name in LOG_NAMES[1:]:
        # The JVM may be between writing one log and the next: compare the common prefix.
        n = min(len(reference), len(parsed[name]))
        assert n >= len(reference) - 2, name
        assert parsed[name][:n] == reference[:n], name
    assert all(p.heap_after_mb is not None and p.heap_after_mb > 0 for p in reference)


@needs_jdk
def test_log_probe_follows_the_jvms_own_log_rotation(jvm: Jvm) -> None:
    # Earlier tests' load already rotated this log; files archived before we start are
    # not ours to read (archives get fresh suffixes: filecount is never reached here).
    archived_before = set(jvm.logs.glob("rotated.log.*"))
    probe = JvmGcProbe(str(jvm.log("rotated.log")), from_start=True)
    now = time.monotonic()
    probe.sample(now, me())

    def new_archives() -> list[Path]:
        return sorted(set(jvm.logs.glob("rotated.log.*")) - archived_before)

    deadline = time.monotonic() + 10
    while len(new_archives()) < 2 and time.monotonic() < deadline:
        drive(jvm.port, 0.25, lambda: probe.sample(time.monotonic(), me()), tick_s=0.05)
    time.sleep(0.3)
    probe.sample(time.monotonic(), me())
    probe.close()
    rotated = new_archives()
    assert len(rotated) >= 2, "the JVM did not rotate its log: raise the load"
    expected = []
    for path in [*rotated, jvm.log("rotated.log")]:
        expected += [p.pause_ms for p in map(parse_pause_line, path.read_text().splitlines()) if p]
    assert len(expected) > 20
    assert probe.total_pause_ms == pytest.approx(sum(expected), abs=1e-6)


@needs_jdk
@needs_jstat
def test_jstat_probe_measures_the_same_gc_time_as_the_log(jvm: Jvm) -> None:
    target = [psutil.Process(jvm.proc.pid)]
    probe = JvmGcProbe(pid=None, jstat_interval_s=0.1)  # finds the JVM in the tree
    assert probe.source == "jstat"
    samples: list[tuple[float, dict[str, float]]] = []

    def tick() -> None:
        now = time.monotonic()
        samples.append((now, probe.sample(now, target)))

    try:
        # Wait (idle) until jstat has printed two rows: then rates flow.
        assert wait_until(lambda: bool(tick() or samples[-1][1]), timeout=15), probe.unavailable
        start = jvm.log().stat().st_size
        samples.clear()
        tick()
        drive(jvm.port, 1.5, tick)
        time.sleep(0.5)  # jstat's next rows carry the last collections
        tick()
        command = probe.jstat_command
        assert command is not None
        assert command[0].endswith("jstat")
        assert command[-3:] == ["-gcutil", str(jvm.proc.pid), "100ms"]
        helpers = jstat_processes(psutil.Process())
        assert len(helpers) == 1
    finally:
        probe.close()
    assert wait_until(lambda: all(gone(p) for p in helpers), timeout=5)
    pauses = logged_pauses(jvm.log(), start)
    assert len(pauses) >= 10
    assert "gc.pause_max_ms" not in samples[-1][1]  # jstat has no per-pause figures
    # GCT is the JVM's own running total of the same pauses, at 1 ms resolution.
    assert reported_total(samples, "gc.collections_per_s") == pytest.approx(len(pauses))
    # Measured here: GCT runs about 3% below the logged sum (different clocks and edges).
    assert reported_total(samples, "gc.pause_ms_per_s") == pytest.approx(sum(pauses), rel=0.15)


def jstat_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The jstat JVMs among ``parent``'s descendants."""
    found = []
    for proc in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.name() in ("jstat", "java") and "-gcutil" in proc.cmdline():
                found.append(proc)
    return found


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@needs_jstat
def test_jstat_on_a_process_that_is_not_a_jvm_says_why(spawn) -> None:
    sleeper = spawn("import time; time.sleep(30)")
    target = [psutil.Process(sleeper.pid)]
    probe = JvmGcProbe(pid=sleeper.pid)
    try:
        assert wait_until(
            lambda: probe.sample(time.monotonic(), target) == {} and probe.unavailable is not None
        )
    finally:
        probe.close()
    assert probe.unavailable is not None
    assert probe.unavailable.startswith(f"jstat could not read JVM {sleeper.pid} (")
    assert "\n" not in probe.unavailable


def test_without_log_or_jstat_the_probe_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    probe = JvmGcProbe(pid=os.getpid())
    assert probe.sample(time.monotonic(), me()) == {}
    assert probe.unavailable is not None
    assert "no jstat found" in probe.unavailable
    assert "openjdk-17-jdk-headless" in probe.unavailable


@needs_jstat
def test_jstat_dies_with_its_owner() -> None:
    # The owner stands in for perfsleuth, killed without any chance to clean up.
    code = (
        "import os, sys, time, psutil\n"
        "from probes.gc.jvm import JvmGcProbe\n"
        "probe = JvmGcProbe(pid=os.getpid())\n"
        "probe.sample(time.monotonic(), [psutil.Process()])\n"
        "print(' '.join(probe.jstat_command), flush=True)\n"
        "time.sleep(30)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert owner.stdout is not None
        assert "-gcutil" in owner.stdout.readline().decode()
        helpers: list[psutil.Process] = []
        assert wait_until(
            lambda: bool(helpers.extend(jstat_processes(psutil.Process(owner.pid))) or helpers),
            timeout=10,
        )
        owner.kill()
        owner.wait(timeout=5)
        assert wait_until(lambda: all(gone(p) for p in helpers), timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(timeout=5)
        if owner.stdout is not None:
            owner.stdout.close()


# --- the log tail on real files: partial lines, truncation, rotation, junk ---------------

PAUSE_1 = "[1.0s][info][gc] GC(1) Pause Young (Normal) (G1 Evacuation Pause) 24M->4M(64M) 3.500ms"
PAUSE_2 = "[2.0s][info][gc] GC(2) Pause Full (G1 Compaction Pause) 60M->20M(64M) 30.250ms"


def append(path: Path, data: str | bytes) -> None:
    with path.open("ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def test_attach_reads_only_new_lines_and_holds_a_partial_last_line(tmp_path) -> None:
    log = tmp_path / "gc.log"
    log.write_text(PAUSE_1 + "\n")  # written before we attached: not ours to count
    probe = JvmGcProbe(str(log))
    assert probe.sample(0.0, me()) == {}
    head, tail = PAUSE_2[:40], PAUSE_2[40:]
    append(log, head)
    assert probe.sample(1.0, me()) == {
        "gc.pause_ms_per_s": 0.0,
        "gc.collections_per_s": 0.0,
        "gc.pause_max_ms": 0.0,
    }
    append(log, tail + "\n")
    assert probe.sample(1.5, me()) == {
        "gc.pause_ms_per_s": pytest.approx(30.25 / 0.5),
        "gc.collections_per_s": pytest.approx(2.0),
        "gc.pause_max_ms": 30.25,
        "gc.heap_after_mb": 20.0,
    }


def test_junk_lines_are_skipped_and_never_raise(tmp_path) -> None:
    log = tmp_path / "gc.log"
    log.touch()
    probe = JvmGcProbe(str(log))
    probe.sample(0.0, me())
    junk = [
        b"\x00\xff\xfe binary \x80 junk",
        b"[1.0s][info][gc,start] GC(9) Pause Young (Normal) (G1 Evacuation Pause)",
        b"[1.0s][info][gc] GC(9) Concurrent Mark Cycle 12.345ms",
        b"[1.0s][info][gc] GC(9) Pause Young 24M->4M(64M) 3.4.5ms",
        b"GC(x) Pause Young 1ms",
        b"x" * 200_000,  # longer than any log line: dropped unparsed
        b"",
    ]
    append(log, b"\n".join(junk) + b"\n" + PAUSE_1.encode() + b"\r\n")
    metrics = probe.sample(1.0, me())
    assert probe.unavailable is None
    assert metrics["gc.collections_per_s"] == 1.0
    assert metrics["gc.pause_max_ms"] == 3.5


def test_truncation_and_rename_rotation_restart_from_the_new_start(tmp_path) -> None:
    log = tmp_path / "gc.log"
    log.write_text("")
    probe = JvmGcProbe(str(log))
    probe.sample(0.0, me())
    append(log, PAUSE_1 + "\n" + PAUSE_1 + "\n")
    assert probe.sample(1.0, me())["gc.collections_per_s"] == 2.0

    log.write_text(PAUSE_2 + "\n")  # truncated in place, then one new line
    assert probe.sample(2.0, me())["gc.pause_max_ms"] == 30.25

    append(log, PAUSE_1 + "\n")  # written to the old file just before it is rotated
    log.rename(tmp_path / "gc.log.0")
    assert probe.sample(3.0, me())["gc.collections_per_s"] == 1.0  # mid-rotation: no file
    log.write_text(PAUSE_2 + "\n" + PAUSE_2 + "\n")
    metrics = probe.sample(4.0, me())
    assert metrics["gc.collections_per_s"] == 2.0
    assert probe.total_pause_ms == pytest.approx(3.5 * 3 + 30.25 * 3)


def test_a_vanished_log_ends_input_cleanly(tmp_path) -> None:
    log = tmp_path / "gc.log"
    log.write_text("")
    probe = JvmGcProbe(str(log))
    probe.sample(0.0, me())
    append(log, PAUSE_1 + "\n")
    log.unlink()
    assert probe.sample(1.0, me())["gc.collections_per_s"] == 1.0
    assert probe.sample(2.0, me())["gc.collections_per_s"] == 0.0
    assert probe.unavailable is None


def test_missing_log_when_attaching_is_reported_in_one_line(tmp_path) -> None:
    probe = JvmGcProbe(str(tmp_path / "nope.log"))
    assert probe.unavailable is not None
    assert "does not exist" in probe.unavailable
    assert "-Xlog:gc:file=" in probe.unavailable


def test_a_log_created_after_launch_is_read_from_its_start(tmp_path) -> None:
    log = tmp_path / "gc.log"
    probe = JvmGcProbe(str(log), from_start=True)
    assert probe.unavailable is None
    assert probe.sample(0.0, me()) == {}
    log.write_text(PAUSE_1 + "\n")
    assert probe.sample(1.0, me())["gc.pause_ms_per_s"] == 3.5


def test_no_live_target_means_no_gc_metrics_and_a_new_baseline(tmp_path) -> None:
    log = tmp_path / "gc.log"
    log.write_text("")
    probe = JvmGcProbe(str(log))
    probe.sample(0.0, me())
    append(log, PAUSE_2 + "\n")
    assert probe.sample(1.0, []) == {}  # target gone: the gap is a gap, not zeros
    append(log, PAUSE_1 + "\n")
    assert probe.sample(2.0, me()) == {"gc.heap_after_mb": 4.0}  # back: gauges only
    assert probe.sample(3.0, me())["gc.collections_per_s"] == 0.0
