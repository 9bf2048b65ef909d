"""Stack probe, GC estimate and speedscope export against real Python processes and py-spy."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from probes.stacks.gc_estimate import GcEstimateProbe, gc_symbol_in, interpreter_binary, is_gc_stack
from probes.stacks.probe import StackProbe, StackWindow
from probes.stacks.profile import (
    format_collapsed,
    frame_label,
    merge,
    parse_collapsed,
    parse_frame,
    top_functions,
)
from probes.stacks.pyspy import find_py_spy
from tracker.reports.stacks_speedscope import speedscope_document, write_speedscope

pytestmark = pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")

# One thread burns CPU in hot_loop (holding the GIL), another sleeps.
HOT_AND_SLEEPER = """
import threading, time
def sleeper():
    while True:
        time.sleep(0.5)
def hot_loop():
    x = 0
    while True:
        x += 1
threading.Thread(target=sleeper, daemon=True).start()
print("ready", flush=True)
hot_loop()
"""

# Wakes rarely: a woken thread is briefly runnable, which py-spy counts as active.
SLEEPER = """
import time
print("ready", flush=True)
while True:
    time.sleep(0.5)
"""

# Builds reference cycles so the cyclic collector runs much of the time, and prints the
# collector's real time per second, measured in-process with gc.callbacks.
GC_HEAVY = """
import gc, threading, time
spent = [0.0, 0.0]
def on_gc(phase, info):
    if phase == "start":
        spent[1] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - spent[1]
gc.callbacks.append(on_gc)
def report():
    last, t = 0.0, time.perf_counter()
    while True:
        time.sleep(0.5)
        now = time.perf_counter()
        print("gc_ms_per_s", 1000 * (spent[0] - last) / (now - t), flush=True)
        last, t = spent[0], now
class Node:
    def __init__(self):
        self.me = self
threading.Thread(target=report, daemon=True).start()
print("ready", flush=True)
while True:
    junk = [Node() for _ in range(1000)]
    for node in junk:
        node.all = junk
"""

# speedscope's published file-format schema, https://www.speedscope.app/file-format-schema.json
# (JSON Schema draft-06), transcribed as data.
_NUMBER = {"type": "number"}
_VALUE_UNIT = {"enum": ["bytes", "microseconds", "milliseconds", "nanoseconds", "none", "seconds"]}
_EVENT = {
    "type": "object",
    "properties": {"type": {"type": "string"}, "frame": _NUMBER, "at": _NUMBER},
    "required": ["at", "frame", "type"],
}
SPEEDSCOPE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "definitions": {
        "Frame": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "file": {"type": "string"},
                "line": _NUMBER,
                "col": _NUMBER,
            },
            "required": ["name"],
        },
        "EventedProfile": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["evented"]},
                "name": {"type": "string"},
                "unit": _VALUE_UNIT,
                "startValue": _NUMBER,
                "endValue": _NUMBER,
                "events": {"type": "array", "items": _EVENT},
            },
            "required": ["endValue", "events", "name", "startValue", "type", "unit"],
        },
        "SampledProfile": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["sampled"]},
                "name": {"type": "string"},
                "unit": _VALUE_UNIT,
                "startValue": _NUMBER,
                "endValue": _NUMBER,
                "samples": {"type": "array", "items": {"type": "array", "items": _NUMBER}},
                "weights": {"type": "array", "items": _NUMBER},
            },
            "required": ["endValue", "name", "samples", "startValue", "type", "unit", "weights"],
        },
    },
    "type": "object",
    "properties": {
        "$schema": {
            "type": "string",
            "enum": ["https://www.speedscope.app/file-format-schema.json"],
        },
        "shared": {
            "type": "object",
            "properties": {"frames": {"type": "array", "items": {"$ref": "#/definitions/Frame"}}},
            "required": ["frames"],
        },
        "profiles": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"$ref": "#/definitions/EventedProfile"},
                    {"$ref": "#/definitions/SampledProfile"},
                ]
            },
        },
        "name": {"type": "string"},
        "activeProfileIndex": _NUMBER,
        "exporter": {"type": "string"},
    },
    "required": ["$schema", "profiles", "shared"],
}


Start = Callable[..., subprocess.Popen[str]]


@contextlib.contextmanager
def _processes() -> Iterator[Start]:
    """Start Python children in their own process groups; kill every group on exit."""
    procs: list[subprocess.Popen[str]] = []

    def start(code: str, python: str = sys.executable) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [python, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # interpreter up, workload running
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture
def start() -> Iterator[Start]:
    with _processes() as start_process:
        yield start_process


def _drive(
    probe: StackProbe | GcEstimateProbe,
    pid: int,
    until: Callable[[dict[str, float]], bool],
    timeout: float,
) -> dict[str, float]:
    """Call ``sample`` every 100 ms like the sampler until ``until(metrics)`` or timeout."""
    procs = [psutil.Process(pid)]
    deadline = time.monotonic() + timeout
    metrics: dict[str, float] = {}
    while time.monotonic() < deadline and not probe.unavailable:
        metrics = probe.sample(time.monotonic(), procs)
        if until(metrics):
            break
        time.sleep(0.1)
    return metrics


def _windows_of(
    probe: StackProbe, pid: int, count: int, timeout: float = 10.0
) -> list[StackWindow]:
    windows: list[StackWindow] = []

    def enough(_: dict[str, float]) -> bool:
        windows.extend(probe.take_windows())
        return len(windows) >= count

    _drive(probe, pid, enough, timeout)
    return windows


@pytest.fixture(scope="module")
def hot_run() -> tuple[list[StackWindow], dict[str, float], dict[str, int]]:
    """Three windows of the default StackProbe on HOT_AND_SLEEPER (shared: ~4 s)."""
    with _processes() as start_process:
        proc = start_process(HOT_AND_SLEEPER)
        probe = StackProbe(proc.pid)
        try:
            windows = _windows_of(probe, proc.pid, 3)
            metrics = probe.sample(time.monotonic(), [psutil.Process(proc.pid)])
            profile = probe.profile()
        finally:
            probe.close()
    assert probe.unavailable is None
    return windows, metrics, profile


def test_a_thread_burning_cpu_holds_the_gil_and_tops_the_profile(hot_run) -> None:
    windows, metrics, profile = hot_run
    assert len(windows) >= 3
    samples = sum(w.samples for w in windows)
    gil = sum(w.gil_samples for w in windows)
    assert samples >= 60  # 99 a window at 100 Hz; allow a loaded machine
    assert gil / samples > 0.9
    assert set(metrics) == set(StackProbe.METRICS)
    assert metrics["py.gil_held_pct"] > 80
    assert metrics["py.samples_per_s"] > 40
    top = top_functions(profile, 3)
    assert parse_frame(top[0].function).name == "hot_loop"
    assert top[0].self_pct > 90
    # The profile is the GIL holder's: the sleeping thread never appears in it.
    assert not any("sleeper" in stack for stack in profile)


def test_the_sleeping_thread_is_counted_idle(hot_run) -> None:
    windows, _, _ = hot_run
    threads = sum(w.thread_samples for w in windows)
    idle = sum(w.idle_samples for w in windows)
    assert threads >= 2 * (len(windows) - 1)  # one snapshot a window, two threads each
    assert 0.25 <= idle / threads <= 0.75  # the sleeper idle, hot_loop running


def test_total_time_ranks_the_callers(hot_run) -> None:
    _, _, profile = hot_run
    by_total = top_functions(profile, 2, by="total")
    assert [parse_frame(f.function).name for f in by_total] == ["<module>", "hot_loop"]
    assert by_total[0].total_pct == pytest.approx(100.0)
    assert by_total[0].self_samples == 0


def test_speedscope_export_matches_the_published_schema(hot_run, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    windows, _, profile = hot_run
    per_window = {f"window {i}": w.stacks for i, w in enumerate(windows)}
    path = tmp_path / "profile.speedscope.json"
    write_speedscope(path, {"run": profile, **per_window}, sample_interval_s=0.01)
    document = json.loads(path.read_text())
    jsonschema.Draft6Validator(SPEEDSCOPE_SCHEMA).validate(document)
    frames = document["shared"]["frames"]
    run = document["profiles"][0]
    assert run["type"] == "sampled" and run["unit"] == "seconds"
    assert len(run["samples"]) == len(run["weights"]) == len(profile)
    assert sum(run["weights"]) == pytest.approx(sum(profile.values()) * 0.01)
    heaviest = [frames[i]["name"] for i in run["samples"][0]]
    assert heaviest == ["<module>", "hot_loop"]  # root first, leaf last
    assert all(0 <= i < len(frames) for p in document["profiles"] for s in p["samples"] for i in s)


def test_a_sleeping_process_is_idle_without_the_gil(start: Start) -> None:
    proc = start(SLEEPER)
    with StackProbe(proc.pid) as probe:
        windows = _windows_of(probe, proc.pid, 2)
    assert probe.unavailable is None
    assert len(windows) >= 2
    assert sum(w.thread_samples for w in windows) >= 1
    assert sum(w.idle_samples for w in windows) == sum(w.thread_samples for w in windows)
    assert sum(w.gil_samples for w in windows) / sum(w.samples for w in windows) < 0.1


@functools.cache
def _python_with_gc_symbols() -> str | None:
    """An interpreter whose collector py-spy can name: this one if it qualifies (pyenv and
    python.org builds keep their symbols), else another python3 on PATH or under pyenv."""
    candidates = [sys.executable, shutil.which("python3") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob("3.1[0-9]*/bin/python3"))
    for python in dict.fromkeys(c for c in candidates if c):
        with _processes() as start_process, contextlib.suppress(OSError, AssertionError):
            proc = start_process(SLEEPER, python=python)
            with contextlib.suppress(OSError, ValueError):
                if gc_symbol_in(interpreter_binary(proc.pid)):
                    return python
    return None


needs_gc_symbols = pytest.mark.skipif(
    _python_with_gc_symbols() is None,
    reason="no CPython 3.10+ with a symbol table here (pyenv or python.org build needed)",
)


@needs_gc_symbols
def test_gc_estimate_follows_the_collectors_real_time(start: Start) -> None:
    python = _python_with_gc_symbols()
    assert python is not None
    heavy = start(GC_HEAVY, python=python)
    calm = start(HOT_AND_SLEEPER, python=python)
    windows: dict[int, dict[float, float]] = {heavy.pid: {}, calm.pid: {}}
    probes = [GcEstimateProbe(p.pid, rate_hz=50, window_s=1) for p in (heavy, calm)]
    deadline = time.monotonic() + 12
    try:
        while time.monotonic() < deadline and min(len(w) for w in windows.values()) < 2:
            for probe in probes:
                metrics = probe.sample(time.monotonic(), [psutil.Process(probe.pid)])
                latest = probe.latest()
                if latest is not None:
                    assert metrics == {"gc.pause_ms_per_s_estimate": latest[1]}
                    windows[probe.pid][latest[0]] = latest[1]
            time.sleep(0.1)
    finally:
        for probe in probes:
            probe.close()
    assert all(p.unavailable is None for p in probes)
    estimates = {pid: list(w.values()) for pid, w in windows.items()}
    os.killpg(heavy.pid, signal.SIGKILL)
    out, _ = heavy.communicate(timeout=5)
    truth = [float(line.split()[1]) for line in out.splitlines() if line.startswith("gc_ms_per_s")]
    real = sum(truth[1:]) / len(truth[1:])
    estimate = sum(estimates[heavy.pid]) / len(estimates[heavy.pid])
    assert real > 200  # the workload really is collector-bound
    assert 0.5 * real < estimate < 1.5 * real
    assert max(estimates[calm.pid]) < 50  # no garbage, no collector time


@needs_gc_symbols
def test_native_stacks_show_the_collector(start: Start) -> None:
    python = _python_with_gc_symbols()
    assert python is not None
    proc = start(GC_HEAVY, python=python)
    with StackProbe(proc.pid, rate_hz=50, native=True) as probe:
        windows = _windows_of(probe, proc.pid, 1)
    assert probe.unavailable is None
    stacks = merge(w.stacks for w in windows)
    in_gc = sum(count for stack, count in stacks.items() if is_gc_stack(stack))
    assert in_gc > 0
    assert any(
        parse_frame(label).file.startswith("libpython") for s in stacks for label in s.split(";")
    )


def _stripped_python() -> str | None:
    for candidate in ("/usr/bin/python3", "/usr/bin/python3.11"):
        if os.access(candidate, os.X_OK):
            path = Path(candidate).resolve()
            with contextlib.suppress(OSError, ValueError):
                if gc_symbol_in(path) is None:
                    return candidate
    return None


@pytest.mark.skipif(_stripped_python() is None, reason="no stripped distro python3 here")
def test_gc_estimate_says_why_a_stripped_interpreter_cannot_be_read(start: Start) -> None:
    python = _stripped_python()
    assert python is not None
    proc = start(GC_HEAVY, python=python)
    probe = GcEstimateProbe(proc.pid, rate_hz=20, window_s=1)
    try:
        _drive(probe, proc.pid, lambda m: False, timeout=8)
    finally:
        probe.close()
    assert probe.unavailable is not None
    assert "stripped" in probe.unavailable and "\n" not in probe.unavailable
    # The stack probe itself needs no C symbols and still works on that interpreter.
    with StackProbe(proc.pid) as stacks:
        assert _windows_of(stacks, proc.pid, 1)
    assert stacks.unavailable is None


def test_symbol_table_check_tells_found_from_old_and_stripped(start: Start, tmp_path: Path) -> None:
    python = _python_with_gc_symbols()
    if python is not None:
        binary = interpreter_binary(start(SLEEPER, python=python).pid)
        assert binary.name.startswith("libpython") or binary.name == "exe"
        assert gc_symbol_in(binary) is True
    stripped = _stripped_python()
    if stripped is not None:
        assert gc_symbol_in(Path(stripped).resolve()) is None
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for old in pyenv.glob("3.9*/lib/libpython3.9.so.1.0"):
        assert gc_symbol_in(old) is False  # has symbols, but 3.9 calls it "collect"
    text = tmp_path / "not-elf"
    text.write_text("#!/bin/sh\n")
    with pytest.raises(ValueError, match="not an ELF file"):
        gc_symbol_in(text)


def test_a_pid_without_a_process_is_reported_once(start: Start) -> None:
    proc = start(SLEEPER)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    me = [psutil.Process()]  # a live "target" list, so the probes try to sample
    probes = [StackProbe(proc.pid), GcEstimateProbe(proc.pid, window_s=1)]
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline and not all(p.unavailable for p in probes):
            for probe in probes:
                assert probe.sample(time.monotonic(), me) == {}
            time.sleep(0.05)
    finally:
        for probe in probes:
            probe.close()
    for probe in probes:
        assert probe.unavailable == f"no live process with pid {proc.pid} to sample"


def test_missing_py_spy_is_reported_before_sampling() -> None:
    probe = StackProbe(os.getpid(), py_spy="/nonexistent/py-spy")
    assert probe.unavailable is not None and probe.unavailable.startswith("py-spy not found")
    assert probe.sample(time.monotonic(), [psutil.Process()]) == {}


def test_target_dying_mid_run_ends_sampling_quietly(start: Start) -> None:
    proc = start(HOT_AND_SLEEPER)
    probe = StackProbe(proc.pid)
    try:
        assert _windows_of(probe, proc.pid, 1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        assert probe.sample(time.monotonic(), []) == {}  # no live target: a gap
        assert probe._thread is not None
        probe._thread.join(timeout=5)  # py-spy notices the exit and the thread ends
        assert not probe._thread.is_alive()
    finally:
        probe.close()
    assert probe.unavailable is None  # a dead target is a gap, not a broken probe


def _nobody_python() -> list[str] | None:
    """A Python that user nobody can run with psutil and this repo importable, or None."""
    if os.geteuid() != 0:
        return None
    paths = [str(Path(__file__).resolve().parents[2]), str(Path(psutil.__file__).parents[1])]
    for python in ("/usr/bin/python3", sys.executable):
        probe = subprocess.run(
            [python, "-c", "import psutil, probes.stacks.probe"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
            user=65534,
            group=65534,
            extra_groups=[],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0:
            return [python]
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a helper as another user")
def test_without_ptrace_rights_the_reason_says_what_to_do(start: Start) -> None:
    python = _nobody_python()
    if python is None:
        pytest.skip("no Python that user nobody can run with psutil installed")
    target = start(SLEEPER)  # owned by root: nobody may not read its memory
    script = (
        "import os, sys, time, psutil\n"
        "from probes.stacks.probe import StackProbe\n"
        "probe = StackProbe(int(sys.argv[1]), py_spy=sys.argv[2])\n"
        "deadline = time.monotonic() + 10\n"
        "while not probe.unavailable and time.monotonic() < deadline:\n"
        "    probe.sample(time.monotonic(), [psutil.Process()])\n"
        "    time.sleep(0.05)\n"
        "probe.close()\n"
        "print(probe.unavailable)\n"
    )
    paths = [str(Path(__file__).resolve().parents[2]), str(Path(psutil.__file__).parents[1])]
    out = subprocess.run(
        [*python, "-c", script, str(target.pid), str(find_py_spy())],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    reason = out.stdout.strip()
    assert reason.startswith(f"py-spy may not read pid {target.pid}'s memory (ptrace)")
    assert "root" in reason


def test_collapsed_stacks_round_trip_and_rank() -> None:
    text = (
        "main (app.py:3);handle (app.py:10);parse (json.py:5) 6\n"
        "main (app.py:3);handle (app.py:11) 3\n"
        "main (app.py:3);fib (m.py:2);fib (m.py:3);fib (m.py:3) 1\n"
        "not a stack line\n"
    )
    stacks = parse_collapsed(text)
    assert parse_collapsed(format_collapsed(stacks)) == stacks
    by_self = {f.function: f for f in top_functions(stacks, 10)}
    assert by_self["parse (json.py)"].self_samples == 6
    assert by_self["handle (app.py)"].self_samples == 3  # two lines, one function
    assert by_self["handle (app.py)"].total_samples == 9
    assert by_self["fib (m.py)"].total_samples == 1  # recursion counted once per sample
    assert by_self["main (app.py)"].total_pct == pytest.approx(100.0)
    assert top_functions(stacks, 1)[0].function == "parse (json.py)"
    assert merge([stacks, stacks])["main (app.py:3);handle (app.py:11)"] == 6
    with pytest.raises(ValueError, match="self"):
        top_functions(stacks, by="wall")


def test_frame_labels_survive_odd_names() -> None:
    label = frame_label("f;g", "weird;file.py", 7)
    assert ";" not in label
    assert parse_frame(label).line == 7
    assert parse_frame("gc_collect_main (libpython3.11.so.1.0)").file == "libpython3.11.so.1.0"
    assert parse_frame("0x7f0ce684524a").name == "0x7f0ce684524a"
    assert is_gc_stack("<module> (a.py:1);gc_collect_main.lto_priv.0 (python3.12)")
    assert not is_gc_stack("<module> (a.py:1);gc_alloc (libpython3.12.so)")


def test_speedscope_counts_without_an_interval() -> None:
    document = speedscope_document({"p": {"a (x.py:1);b (x.py:2) ": 0, "a (x.py:1)": 4}})
    (profile,) = document["profiles"]
    assert profile["unit"] == "none" and profile["weights"] == [4]
    assert document["shared"]["frames"] == [{"name": "a", "file": "x.py", "line": 1}]
    assert document["$schema"] == "https://www.speedscope.app/file-format-schema.json"
