"""GoGcProbe against a real Go HTTP server launched with GODEBUG=gctrace=1.

The server is tests/support/gc_servers/gcserver.go (stdlib only), built offline with the
installed Go toolchain into a temporary directory. It is launched through
``Target.launch`` exactly as perfsleuth would, with its stderr on a pipe the probe reads.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from support.gc_drive import drive, wait_until
from support.go_build import build_go_server

from probes.gc.common import MAX_LINE_BYTES
from probes.gc.go import GoGcProbe, parse_gctrace_line
from probes.sampler import ProbeSample, Sampler
from probes.target import Target

# Independent of the probe's parser: the clock phases and heap figures of a gctrace line.
_TRACE = re.compile(r"^gc \d+ @[\d.]+s \d+%: ([\d.]+)\+[\d.]+\+([\d.]+) ms clock, .*->(\d+) MB,")


@dataclass
class GoServer:
    target: Target
    port: int
    probe: GoGcProbe
    sink: Path


def trace_pauses(text: str) -> list[tuple[float, float]]:
    """(pause ms, live heap MiB) of every gctrace line in ``text``."""
    found = []
    for line in text.splitlines():
        m = _TRACE.match(line)
        if m:
            found.append((float(m[1]) + float(m[2]), float(m[3])))
    return found


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_server(tmp_path_factory.mktemp("go-build"))


@pytest.fixture
def go_server(go_binary: Path, tmp_path: Path) -> Iterator[GoServer]:
    # What perfsleuth does for `--launch`: gctrace on, stderr to a pipe the probe reads.
    err_read, err_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        target = Target.launch(
            [str(go_binary), "-stderr-lines", "3"],
            env={"GODEBUG": "gctrace=1"},
            stdout=out_write,
            stderr=err_write,
        )
    finally:
        os.close(err_write)  # the child holds the only write ends now
        os.close(out_write)
    sink_path = tmp_path / "target-stderr.log"
    with sink_path.open("ab") as sink, os.fdopen(out_read, "rb") as stdout:
        try:
            probe = GoGcProbe.from_stream(os.fdopen(err_read, "rb"), sink=sink)
            ready, _, _ = select.select([stdout], [], [], 10)
            line = stdout.readline().decode() if ready else ""
            assert line.startswith("PORT "), f"the Go server did not start: {line!r}"
            yield GoServer(target, int(line.split()[1]), probe, sink_path)
        finally:
            target.terminate()
            assert wait_until(lambda: probe.input_ended, timeout=5)


def test_probe_sees_every_real_gc_cycle_of_a_loaded_go_server(go_server: GoServer) -> None:
    probe = go_server.probe
    target = go_server.target
    ticks: list[ProbeSample] = []
    with Sampler(target, 0.25, on_sample=ticks.append, probes=[probe]) as sampler:
        assert wait_until(lambda: bool(ticks))
        before = probe.total_pause_ms  # idle: cycles (if any) read so far are not reported
        sent = drive(go_server.port, 1.5, lambda: None)
        time.sleep(0.3)
    assert sampler.unavailable == {}
    # One last reading, now that the sampler thread has stopped, collects the stragglers.
    samples = [(t.t_mono, t.metrics) for t in ticks]
    now = time.monotonic()
    samples.append((now, probe.sample(now, target.processes())))

    assert sent > 100
    assert probe.cycles_seen >= 10, f"{sent} requests caused only {probe.cycles_seen} GCs"
    reported = sum(
        m.get("gc.pause_ms_per_s", 0.0) * (now - prev)
        for (prev, _), (now, m) in itertools.pairwise(samples)
    )
    assert reported == pytest.approx(probe.total_pause_ms - before, abs=1e-6)
    assert reported > 0
    busy = [m for _, m in samples[1:-1]]
    assert sum(1 for m in busy if m["gc.collections_per_s"] > 0) >= len(busy) // 2
    assert max(m["gc.pause_max_ms"] for m in busy) > 0

    # Cross-check against the same lines, parsed independently from what was forwarded.
    traced = trace_pauses(go_server.sink.read_text())
    assert len(traced) == probe.cycles_seen
    assert sum(p for p, _ in traced) == pytest.approx(probe.total_pause_ms, abs=1e-6)
    assert samples[-1][1]["gc.heap_after_mb"] == traced[-1][1]


def test_the_servers_own_stderr_is_forwarded_unchanged(go_server: GoServer) -> None:
    drive(go_server.port, 0.3, lambda: None)
    go_server.target.terminate()
    assert wait_until(lambda: go_server.probe.input_ended, timeout=5), "stderr never ended"
    lines = go_server.sink.read_text().splitlines()
    assert lines[:3] == [f"gcserver: own stderr line {i}" for i in range(3)]
    assert all(_TRACE.match(line) for line in lines[3:]), lines[3:]
    assert len(lines) - 3 == go_server.probe.cycles_seen > 0


def test_target_death_ends_input_cleanly_and_leaves_a_gap(go_server: GoServer) -> None:
    probe, target = go_server.probe, go_server.target
    probe.sample(time.monotonic(), target.processes())
    drive(go_server.port, 0.3, lambda: None)
    target.terminate()
    assert wait_until(lambda: probe.input_ended, timeout=5)
    assert target.processes() == []
    assert probe.sample(time.monotonic(), []) == {}
    assert probe.unavailable is None


def test_every_byte_is_forwarded_even_junk_and_overlong_lines(tmp_path: Path) -> None:
    payload = (
        b"plain line\n"
        b"\xff\xfe not utf-8 \x80\n"
        + b"y" * (MAX_LINE_BYTES * 3)
        + b"\n"
        + b"gc 1 @0.010s 1%: 0.010+0.50+0.020 ms clock, 0.040+0.1/0.2/0.3+0.080 ms cpu, "
        b"4->4->1 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 2 P\r\n"
        b"no newline at the end"
    )
    writer = (
        "import sys, time\n"
        "data = sys.stdin.buffer.read()\n"
        "for i in range(0, len(data), 7000):\n"  # in pieces, as a real writer would
        "    sys.stderr.buffer.write(data[i:i + 7000]); sys.stderr.buffer.flush()\n"
    )
    sink_path = tmp_path / "sink.bin"
    with sink_path.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", writer], stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert proc.stderr is not None
            probe = GoGcProbe.from_stream(proc.stderr, sink=sink)
            assert proc.stdin is not None
            proc.stdin.write(payload)  # not communicate(): the probe owns stderr
            proc.stdin.close()
            proc.wait(timeout=10)
            assert wait_until(lambda: probe.input_ended, timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
    assert sink_path.read_bytes() == payload
    assert probe.cycles_seen == 1
    assert probe.total_pause_ms == pytest.approx(0.03)


def test_a_failing_sink_does_not_stop_parsing(tmp_path: Path) -> None:
    line = (
        b"gc 3 @1.0s 2%: 0.1+1.0+0.2 ms clock, 0.1+0.1/0.1/0.1+0.1 ms cpu, "
        b"8->9->3 MB, 10 MB goal, 4 P\n"
    )
    sink = (tmp_path / "sink").open("wb")
    sink.close()  # every write now raises ValueError
    read_fd, write_fd = os.pipe()
    probe = GoGcProbe.from_stream(os.fdopen(read_fd, "rb"), sink=sink)
    with os.fdopen(write_fd, "wb") as writer:
        writer.write(line * 3)
    assert wait_until(lambda: probe.input_ended, timeout=5)
    assert probe.cycles_seen == 3


def test_from_file_tails_redirected_stderr(tmp_path: Path) -> None:
    path = tmp_path / "server.err"
    path.write_text("")
    probe = GoGcProbe.from_file(path)
    me = [psutil.Process()]
    assert probe.sample(0.0, me) == {}
    with path.open("a") as f:
        f.write("gc 9 @3.0s 1%: 0.5+2.0+1.5 ms clock, 1+1/1/1+1 ms cpu, 40->41->20 MB, 45 MB")
    assert probe.sample(1.0, me)["gc.collections_per_s"] == 0.0  # line not finished yet
    with path.open("a") as f:
        f.write(" goal, 0 MB stacks, 0 MB globals, 8 P (forced)\n")
    assert probe.sample(2.0, me) == {
        "gc.pause_ms_per_s": 2.0,
        "gc.collections_per_s": 1.0,
        "gc.pause_max_ms": 2.0,
        "gc.heap_after_mb": 20.0,
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # Go 1.19+ (stacks and globals), as printed here by go1.19.
        (
            "gc 1 @0.320s 0%: 0.23+1.8+0.002 ms clock, 0.46+0.17/0/0+0.005 ms cpu, "
            "3->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P",
            (0.232, 0.0),
        ),
        # Go 1.7-1.18: no stacks/globals; whole milliseconds past 10 ms; forced cycle.
        (
            "gc 12 @10.5s 3%: 12+30+0.51 ms clock, 48+1.2/20/30+2.0 ms cpu, "
            "120->130->64 MB, 240 MB goal, 4 P (forced)",
            (12.51, 64.0),
        ),
        # Glued to the end of the program's own unterminated output.
        (
            "partial outputgc 2 @1.0s 1%: 0.1+1+0.2 ms clock, 0.4+0/0/0+0.8 ms cpu, "
            "4->4->2 MB, 5 MB goal, 4 P",
            (0.3, 2.0),
        ),
        ("gc 1 @0.1s 0%: garbled", None),
        ("scvg: 0 MB released", None),
        ("GC forced", None),
        ("", None),
        ("gc 1 @0.0s 0%: 0.1+0.2+0.3+0.4+0.5 ms clock, 1+2+3 ms cpu, 4->4->1 MB", None),
    ],
)
def test_gctrace_lines(line: str, expected: tuple[float, float] | None) -> None:
    pause = parse_gctrace_line(line)
    if expected is None:
        assert pause is None
    else:
        assert pause is not None
        assert (pause.pause_ms, pause.heap_after_mb) == pytest.approx(expected)
