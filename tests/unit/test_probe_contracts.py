"""The contract every probe keeps, checked on every probe class in the `probes` package.

In the spirit of psutil's test_contracts.py: instead of what each probe measures (their
own tests do that), what every probe promises to the sampler and the store, checked on
real processes and the real /proc:

- its metrics are named ``<resource>.<what>_<unit>`` (docs/probes.md), the unit part
  agreeing with the unit it declares, and every unit is one the project knows;
- a sample is a flat dict of metric name -> finite int or float, and every name in it
  is one the probe declares (so ``probes.unit_of`` knows its unit);
- ``close()`` can be called twice, also before any sample, and afterwards nothing the
  probe started (threads, child processes, file descriptors) is left behind;
- a probe that cannot run says why in one line through ``unavailable`` (or
  ``partly_unavailable``), the way ``probes.Sampler`` reports it, instead of raising.

Probe classes are found by walking the package, so a new probe is covered at once: it is
sampled with a default scenario (built without arguments, against a Python target), and
the tests below tell its author what else to add here.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import pkgutil
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pynvml
import pytest
from support.gc_drive import wait_until
from test_probes_gpu import HAS_NVML, FakeDevice, FakeNvml, two_gpus

import probes
from probes import (
    UNITS,
    CpuProbe,
    DiskProbe,
    GcEstimateProbe,
    GoGcProbe,
    GpuProbe,
    JvmGcProbe,
    MemoryProbe,
    PressureProbe,
    Probe,
    ProcessIOProbe,
    PythonGcProbe,
    Sampler,
    SelfProbe,
    StackProbe,
    Target,
    family_of,
    unit_of,
)
from probes.gc import go as go_module
from probes.gc import jvm as jvm_module
from probes.stacks import probe as stack_module

MIB = 1 << 20
DOC = Path(__file__).resolve().parents[2] / "docs" / "probes.md"

# --- finding the probes ---------------------------------------------------------------

KNOWN_PROBES = {
    "CpuProbe",
    "MemoryProbe",
    "PressureProbe",
    "DiskProbe",
    "ProcessIOProbe",
    "GpuProbe",
    "SelfProbe",
    "PythonGcProbe",
    "JvmGcProbe",
    "GoGcProbe",
    "StackProbe",
    "GcEstimateProbe",
}
"""Probes that exist today: discovery must find at least these."""

# The GC agent runs inside the targets, not in perfsleuth: importing its sitecustomize
# here would run this environment's own sitecustomize a second time.
_NOT_PROBE_MODULES = ("probes.gc._agent",)


def _is_probe_class(obj: object) -> bool:
    """A class with what ``probes.sampler.Probe`` asks of the class itself (``unavailable``
    is set per instance, checked on the instances below)."""
    return (
        inspect.isclass(obj)
        and not getattr(obj, "_is_protocol", False)
        and isinstance(getattr(obj, "name", None), str)
        and callable(getattr(obj, "sample", None))
    )


def discover_probes() -> list[type[Any]]:
    found: dict[str, type[Any]] = {}
    for info in pkgutil.walk_packages(probes.__path__, "probes."):
        if info.name.startswith(_NOT_PROBE_MODULES):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if _is_probe_class(obj) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.values(), key=lambda cls: cls.__name__)


PROBES = discover_probes()
PROBE_IDS = [cls.__name__ for cls in PROBES]


# --- metric names and units -------------------------------------------------------------

# docs/probes.md: names are `<resource>.<what>_<unit>`, lower case; the resource may carry
# a device index (`gpu0.`), `mb` means MiB and rates end in `_per_s`.
NAME = re.compile(r"[a-z]+[0-9]*\.[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
UNIT_SUFFIXES = {
    "_pct": "%",
    "_per_s": "1/s",
    "_iops": "1/s",
    "_mb": "MiB",
    "_mb_per_s": "MiB/s",
    "_ms": "ms",
    "_ms_per_s": "ms/s",
    "_w": "W",
    "_mhz": "MHz",
    "_c": "°C",
}
"""Name ending -> the unit it stands for (the longest ending that fits wins)."""
COUNT = "count"
"""Plain counts carry no unit in their name: cpu.threads, cpu.run_queue, gc.processes."""
QUALIFIERS = ("_estimate",)
"""May follow the unit: gc.pause_ms_per_s_estimate."""
KNOWN_UNITS = {*UNIT_SUFFIXES.values(), COUNT}

# A value for each placeholder of a metric family (`cpu.core<N>_pct`).
_PLACEHOLDER_EXAMPLES = {"<N>": "0", "<PID>": "4242", "<DEV>": "vda"}


def unit_in_name(name: str) -> str:
    base = name
    for qualifier in QUALIFIERS:
        base = base.removesuffix(qualifier)
    endings = [ending for ending in UNIT_SUFFIXES if base.endswith(ending)]
    return UNIT_SUFFIXES[max(endings, key=len)] if endings else COUNT


def example_of(template: str) -> str:
    for placeholder, value in _PLACEHOLDER_EXAMPLES.items():
        template = template.replace(placeholder, value)
    return template


def check_metrics(cls: type[Any], metrics: object) -> None:
    """A flat dict of declared metric names -> finite plain numbers."""
    assert isinstance(metrics, dict), f"{cls.__name__}.sample returned {type(metrics).__name__}"
    for name, value in metrics.items():
        assert isinstance(name, str), f"{cls.__name__}: metric name {name!r} is not a str"
        assert NAME.fullmatch(name), f"{cls.__name__}: {name!r} is not <resource>.<what>_<unit>"
        family = family_of(name)
        assert family in cls.METRICS, f"{cls.__name__}: {name!r} is not in its METRICS"
        assert unit_of(name) == cls.METRICS[family][0] != "", name
        # bool is an int, numpy's floats are not float: neither belongs in the store.
        assert type(value) in (int, float), f"{name} = {value!r} ({type(value).__name__})"
        assert math.isfinite(value), f"{name} = {value!r}"


# --- targets ----------------------------------------------------------------------------

# Some CPU on two threads, reads and writes, and reference cycles for the collector; it
# prints "ready" once, then nothing.
WORKLOAD = """
import gc, os, threading, time
def worker():
    while True:
        sum(i * i for i in range(20_000))
        time.sleep(0.01)
threading.Thread(target=worker, daemon=True).start()
print("ready", flush=True)
while True:
    junk = [[] for _ in range(2_000)]
    for item in junk:
        item.append(junk)
    gc.collect()
    with open(os.devnull, "r+b") as f:
        f.write(b"x" * 4096)
        f.read(1)
    time.sleep(0.02)
"""

# Lines in the format the Go runtime prints with GODEBUG=gctrace=1 (`runtime` package
# docs), for the Go probe where no Go toolchain is installed (the real runtime: below).
GCTRACE_WRITER = """
import itertools, sys, time
print("ready", flush=True)
for n in itertools.count(1):
    sys.stderr.write(
        f"gc {n} @{n * 0.05:.3f}s 1%: 0.021+1.2+0.015 ms clock, "
        "0.085+0.3/1.1/2.0+0.061 ms cpu, 4->4->2 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 4 P\\n"
    )
    sys.stderr.flush()
    time.sleep(0.05)
"""

GO_PROGRAM = """package main

import (
	"fmt"
	"time"
)

var keep [][]byte

func main() {
	fmt.Println("ready")
	for {
		keep = append(keep, make([]byte, 64<<10))
		if len(keep) > 64 {
			keep = keep[:0]
		}
		time.Sleep(time.Millisecond)
	}
}
"""

JAVA_PROGRAM = """
public class Alloc {
    public static void main(String[] args) throws Exception {
        System.out.println("ready");
        System.out.flush();
        byte[][] keep = new byte[64][];
        for (int i = 0; ; i++) {
            keep[i % 64] = new byte[64 * 1024];
            if (i % 4 == 0) Thread.sleep(5);
        }
    }
}
"""


class FixedTree:
    """Stands in for a Target whose tree is exactly ``procs`` (the tree under a foreign
    root such as pid 1 would hold this test's own processes too)."""

    alive = True
    death_reason = None

    def __init__(self, procs: list[psutil.Process]) -> None:
        self._procs = procs
        self.pid = procs[0].pid

    def processes(self, max_age_s: float = 0.0) -> list[psutil.Process]:
        return list(self._procs)


class Lab:
    """Starts the targets a scenario needs; :meth:`stop` ends them and closes their pipes."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
    ) -> None:
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.request = request
        self.target: Target | FixedTree | None = None
        self._targets: list[Target] = []
        self._fds: list[int] = []

    def launch(
        self, argv: list[str], *, env: dict[str, str] | None = None, stderr: int | None = None
    ) -> Target:
        """Launch ``argv`` as perfsleuth would and wait until it prints "ready"."""
        read_fd, write_fd = os.pipe()
        try:
            target = Target.launch(argv, env=env, stdout=write_fd, stderr=stderr)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._targets.append(target)
        # Kept open until stop(): a write after "ready" (its newline, unbuffered) must not
        # meet a closed pipe.
        self._fds.append(read_fd)
        _wait_for_ready(read_fd, argv)
        self.target = target
        return target

    def python(
        self,
        code: str = WORKLOAD,
        *,
        env: dict[str, str] | None = None,
        flags: tuple[str, ...] = (),
        stderr: int | None = None,
    ) -> Target:
        return self.launch([sys.executable, *flags, "-c", code], env=env, stderr=stderr)

    def python_writing_stderr(self, code: str) -> Any:
        """A Python target whose stderr is a pipe; returns the read end (binary file)."""
        read_fd, write_fd = os.pipe()
        try:
            self.python(code, stderr=write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return os.fdopen(read_fd, "rb")

    def java(self, gc_log: Path | None = None) -> Target:
        java = shutil.which("java")
        if java is None:
            pytest.skip("no JDK here (java not on PATH): apt-get install openjdk-17-jdk-headless")
        source = self.tmp_path / "Alloc.java"
        source.write_text(JAVA_PROGRAM)
        log_flags = [f"-Xlog:gc:file={gc_log}"] if gc_log is not None else []
        # Single-file source launch (JDK 11+): compiled in memory, ~0.7 s to "ready".
        return self.launch([java, "-XX:+UseSerialGC", "-Xmx32m", *log_flags, str(source)])

    def foreign_process(self) -> FixedTree:
        """pid 1 alone, as a target this user may not inspect; skips as root."""
        if os.geteuid() == 0:
            pytest.skip("running as root: every process's /proc files can be read")
        self.target = FixedTree([psutil.Process(1)])
        return self.target

    def stop(self) -> None:
        """End every target (idempotent)."""
        try:
            while self._targets:
                self._targets.pop().terminate(timeout=2.0)
        finally:
            while self._fds:
                os.close(self._fds.pop())


def _wait_for_ready(fd: int, argv: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    seen = b""
    while b"ready" not in seen:
        left = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(0.0, left))
        if not readable:
            pytest.fail(f"{argv[0]} did not print 'ready' within {timeout:g} s: {seen!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            pytest.fail(f"{argv[0]} exited before it was ready: {seen!r}")
        seen += chunk


@pytest.fixture
def lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    the_lab = Lab(tmp_path, monkeypatch, request)
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture(scope="module")
def go_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GO_PROGRAM, built offline with the installed toolchain (what tests/support/go_build
    does for the GC test server)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain here (go not on PATH): apt-get install golang-go")
    work = tmp_path_factory.mktemp("go-alloc")
    source = work / "alloc.go"
    source.write_text(GO_PROGRAM)
    env = {
        **os.environ,
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
    }
    out = work / "alloc"
    subprocess.run(
        [go, "build", "-o", str(out), str(source)], cwd=work, env=env, check=True, timeout=300
    )
    return out


# --- scenarios: how each probe is built against real targets -----------------------------

Build = Callable[[Lab], Any]


@dataclass(frozen=True)
class Running:
    """A probe built to work, and what it must report within ``timeout`` seconds."""

    build: Build
    expect: frozenset[str] = frozenset()
    """Metrics (families for `<N>` names) it must report at least once; empty: any."""
    timeout: float = 8.0
    unavailable_here: tuple[str, ...] = ()
    """Reasons (substrings) meaning this host cannot run it: the test skips, saying so."""
    slow: bool = False


def _on_python_target(make: Callable[[Target], Any]) -> Build:
    def build(lab: Lab) -> Any:
        return make(lab.python())

    return build


def _gpu(lab: Lab) -> GpuProbe:
    target = lab.python()
    if HAS_NVML:
        return GpuProbe()
    # No NVIDIA driver here: NVML is faked at its boundary, as in test_probes_gpu.py.
    fake = two_gpus()
    fake.devices[0].procs = [(target.pid, 256 * MIB)]
    fake.devices[0].util_samples = [(target.pid, 1, 30)]
    return GpuProbe(fake.module())


def _python_gc(lab: Lab) -> PythonGcProbe:
    probe = PythonGcProbe()
    lab.python(env=probe.launch_env())
    return probe


def _jvm_log(lab: Lab) -> JvmGcProbe:
    log = lab.tmp_path / "gc.log"
    lab.java(gc_log=log)
    return JvmGcProbe(str(log), from_start=True)


def _jvm_jstat(lab: Lab) -> JvmGcProbe:
    if shutil.which("jstat") is None:
        pytest.skip("no jstat on PATH: apt-get install openjdk-17-jdk-headless")
    lab.java()
    return JvmGcProbe(jstat_interval_s=0.25)


def _go_lines(lab: Lab) -> GoGcProbe:
    return GoGcProbe.from_stream(lab.python_writing_stderr(GCTRACE_WRITER))


def _go_runtime(lab: Lab) -> GoGcProbe:
    binary = lab.request.getfixturevalue("go_program")
    read_fd, write_fd = os.pipe()
    try:
        lab.launch([str(binary)], env={"GODEBUG": "gctrace=1"}, stderr=write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return GoGcProbe.from_stream(os.fdopen(read_fd, "rb"))


GC_LOG_METRICS = frozenset(GoGcProbe.METRICS)

RUNNING: dict[str, dict[str, Running]] = {
    "CpuProbe": {
        "python": Running(
            _on_python_target(lambda _: CpuProbe()),
            frozenset(
                {
                    "cpu.process_pct",
                    "cpu.process_max_pct",
                    "cpu.pid<PID>_pct",
                    "cpu.host_pct",
                    "cpu.core<N>_pct",
                    "cpu.threads",
                    "cpu.processes",
                    "cpu.run_queue",
                    "cpu.procs_blocked",
                    "cpu.host_ctx_switches_per_s",
                    "cpu.ctx_switches_voluntary_per_s",
                    "cpu.ctx_switches_involuntary_per_s",
                }
            ),
        )
    },
    "MemoryProbe": {
        "python": Running(
            _on_python_target(lambda _: MemoryProbe()), frozenset(MemoryProbe.METRICS)
        )
    },
    "PressureProbe": {
        "host": Running(
            _on_python_target(lambda _: PressureProbe()),
            frozenset(PressureProbe.METRICS),
            unavailable_here=("pressure stall information unavailable",),
        )
    },
    "DiskProbe": {
        "host": Running(
            _on_python_target(lambda _: DiskProbe()),
            frozenset(
                {"disk.read_iops", "disk.write_mb_per_s", "disk.util_pct", "disk.<DEV>_util_pct"}
            ),
            unavailable_here=("no physical disk",),
        )
    },
    "ProcessIOProbe": {
        "python": Running(
            _on_python_target(lambda _: ProcessIOProbe()), frozenset(ProcessIOProbe.METRICS)
        )
    },
    "SelfProbe": {
        "python": Running(_on_python_target(lambda _: SelfProbe()), frozenset(SelfProbe.METRICS))
    },
    "GpuProbe": {
        ("nvml" if HAS_NVML else "fake-nvml"): Running(
            _gpu,
            frozenset({"gpu.mem_total_mb", "gpu<N>.mem_total_mb"})
            if HAS_NVML
            else frozenset(GpuProbe.METRICS),
            unavailable_here=("",) if HAS_NVML else (),  # a driver, but no usable GPU
        )
    },
    "PythonGcProbe": {"agent": Running(_python_gc, frozenset(PythonGcProbe.METRICS))},
    "JvmGcProbe": {
        "gc-log": Running(_jvm_log, GC_LOG_METRICS, timeout=15),
        "jstat": Running(
            _jvm_jstat, frozenset({"gc.pause_ms_per_s", "gc.collections_per_s"}), timeout=15
        ),
    },
    "GoGcProbe": {
        "gctrace-lines": Running(_go_lines, GC_LOG_METRICS),
        "go-runtime": Running(_go_runtime, GC_LOG_METRICS, slow=True),
    },
    "StackProbe": {
        "python": Running(
            _on_python_target(lambda target: StackProbe(target.pid)),
            frozenset(StackProbe.METRICS),
            timeout=12,
        )
    },
    "GcEstimateProbe": {
        "python": Running(
            _on_python_target(lambda target: GcEstimateProbe(target.pid, rate_hz=20, window_s=1)),
            frozenset(GcEstimateProbe.METRICS),
            timeout=12,
            # The interpreter running the tests may be a stripped distro build.
            unavailable_here=("stripped", "needs CPython 3.10+"),
        )
    },
}


def running_scenarios(cls: type[Any]) -> dict[str, Running]:
    """The class's scenarios; a probe not listed yet is built without arguments."""
    return RUNNING.get(cls.__name__) or {"default": Running(_on_python_target(lambda _: cls()))}


RUNNING_CASES = [
    pytest.param(
        cls,
        scenario,
        id=f"{cls.__name__}-{name}",
        marks=[pytest.mark.slow] if scenario.slow else [],
    )
    for cls in PROBES
    for name, scenario in running_scenarios(cls).items()
]
FIRST_CASES = [
    pytest.param(cls, next(iter(running_scenarios(cls).values())), id=cls.__name__)
    for cls in PROBES
]


@dataclass(frozen=True)
class CannotRun:
    """A probe built where it cannot (wholly, or ``part`` of it) do its work."""

    build: Build
    part: str | None = None
    """Key in ``partly_unavailable``; None: the whole probe is unavailable."""
    timeout: float = 8.0


def _self_of_a_gone_process(lab: Lab) -> SelfProbe:
    target = lab.python()
    probe = SelfProbe(target.pid)
    target.terminate()
    lab.target = None  # a sampler of host metrics only, as in a run without a target
    return probe


def _python_gc_ignored(lab: Lab) -> PythonGcProbe:
    probe = PythonGcProbe(agent_timeout_s=0.5)
    lab.python(env=probe.launch_env(), flags=("-I",))  # -I: PYTHONPATH ignored, no agent
    return probe


def _python_gc_socket_too_long(lab: Lab) -> PythonGcProbe:
    # Unix socket paths are limited to 107 bytes: a long TMPDIR is enough to fail.
    long_tmp = lab.tmp_path / ("t" * 100)
    long_tmp.mkdir()
    lab.monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    probe = PythonGcProbe()
    lab.python(env=probe.launch_env())
    return probe


def _jvm_grace(lab: Lab) -> JvmGcProbe:
    lab.monkeypatch.setattr(jvm_module, "_FIND_JVM_GRACE_S", 0.3)
    lab.python()
    return JvmGcProbe(jstat_interval_s=0.25)


def _go_silent(lab: Lab) -> GoGcProbe:
    lab.monkeypatch.setattr(go_module, "_SILENCE_LIMIT_S", 0.3)
    return GoGcProbe.from_stream(lab.python_writing_stderr(WORKLOAD))


def _stacks_of_a_non_python_process(lab: Lab) -> StackProbe:
    lab.monkeypatch.setattr(stack_module, "_STARTUP_GRACE_S", 0.3)
    target = lab.launch(["sh", "-c", "echo ready; exec sleep 60"])
    return StackProbe(target.pid)


def _no_py_spy(make: Callable[[int, str], Any]) -> Build:
    def build(lab: Lab) -> Any:
        return make(lab.python().pid, str(lab.tmp_path / "no-such-py-spy"))

    return build


def _memory_of_a_foreign_process(lab: Lab) -> MemoryProbe:
    lab.foreign_process()
    return MemoryProbe()


def _io_of_a_foreign_process(lab: Lab) -> ProcessIOProbe:
    lab.foreign_process()
    return ProcessIOProbe()


def _gpu_without_a_driver(lab: Lab) -> GpuProbe:
    if HAS_NVML:
        pytest.skip("an NVIDIA driver is installed here")
    return GpuProbe()  # the real bindings


def _gpu_driver_not_loaded(lab: Lab) -> GpuProbe:
    fake = FakeNvml(
        [FakeDevice("NVIDIA A100-SXM4-40GB")], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    )
    return GpuProbe(fake.module())


CANNOT_RUN: dict[str, dict[str, CannotRun]] = {
    "MemoryProbe": {"smaps-denied": CannotRun(_memory_of_a_foreign_process, part="uss_pss")},
    "PressureProbe": {
        "no-psi": CannotRun(lambda lab: PressureProbe(root=str(lab.tmp_path / "no-pressure")))
    },
    "DiskProbe": {"no-physical-disk": CannotRun(lambda lab: DiskProbe(disks=[]))},
    "ProcessIOProbe": {"io-denied": CannotRun(_io_of_a_foreign_process)},
    "SelfProbe": {"own-process-gone": CannotRun(_self_of_a_gone_process)},
    "GpuProbe": {
        "no-driver": CannotRun(_gpu_without_a_driver),
        "driver-not-loaded": CannotRun(_gpu_driver_not_loaded),
    },
    "PythonGcProbe": {
        "target-drops-the-environment": CannotRun(_python_gc_ignored),
        "socket-path-too-long": CannotRun(_python_gc_socket_too_long),
    },
    "JvmGcProbe": {
        "gc-log-missing": CannotRun(lambda lab: JvmGcProbe(str(lab.tmp_path / "missing.log"))),
        "no-jvm-in-target": CannotRun(_jvm_grace),
    },
    "GoGcProbe": {"no-gctrace-from-target": CannotRun(_go_silent)},
    "StackProbe": {
        "py-spy-missing": CannotRun(_no_py_spy(lambda pid, spy: StackProbe(pid, py_spy=spy))),
        "not-python": CannotRun(_stacks_of_a_non_python_process),
    },
    "GcEstimateProbe": {
        "py-spy-missing": CannotRun(_no_py_spy(lambda pid, spy: GcEstimateProbe(pid, py_spy=spy)))
    },
}

ALWAYS_RUNS = {
    "CpuProbe": "reads /proc/stat and the target's /proc/<pid>/{stat,status,task/*/schedstat}, "
    "which every Linux has and any user may read",
}
"""Probes with no way to fail short of a broken /proc, and why."""

CANNOT_RUN_CASES = [
    pytest.param(cls, case, id=f"{cls.__name__}-{name}")
    for cls in PROBES
    for name, case in CANNOT_RUN.get(cls.__name__, {}).items()
]


# --- leaks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    threads: frozenset[threading.Thread]
    children: frozenset[int]
    fds: int


def held() -> Held:
    me = psutil.Process()
    return Held(
        frozenset(threading.enumerate()),
        frozenset(p.pid for p in me.children(recursive=True)),
        me.num_fds(),
    )


def assert_released(before: Held, what: str) -> None:
    """Nothing started since ``before`` is left (threads, children, fds); polls a while."""

    def left() -> dict[str, object]:
        now = held()
        extra: dict[str, object] = {}
        if threads := [t.name for t in now.threads - before.threads if t.is_alive()]:
            extra["threads"] = threads
        if children := now.children - before.children:
            extra["children"] = sorted(children)
        if now.fds > before.fds:
            extra["fds"] = now.fds - before.fds
        return extra

    assert wait_until(lambda: not left(), timeout=10), f"{what} left behind {left()}"


def close_twice(probe: Any) -> None:
    # close() is optional (the sampler and probes.runtimes look it up with getattr); a
    # probe without one must hold nothing, which assert_released checks.
    close = getattr(probe, "close", None)
    if close is not None:
        assert callable(close)
        close()
        close()


# --- the contract -------------------------------------------------------------------------


def test_discovery_finds_every_known_probe() -> None:
    found = {cls.__name__ for cls in PROBES}
    assert found >= KNOWN_PROBES, f"not found: {sorted(KNOWN_PROBES - found)}"
    assert len(found) == len(PROBES), "two probe classes share a name"


def test_probe_names_are_distinct() -> None:
    # The sampler reports an unavailable probe under its name.
    names = [cls.name for cls in PROBES]
    assert len(set(names)) == len(names), names


def test_the_convention_checked_here_is_the_documented_one() -> None:
    doc = DOC.read_text()
    assert "Names are `<resource>.<what>_<unit>`" in doc
    assert "`mb` means MiB" in doc
    assert set(UNITS.values()) <= KNOWN_UNITS, (
        f"add to UNIT_SUFFIXES: {set(UNITS.values()) - KNOWN_UNITS}"
    )


@pytest.mark.parametrize("cls", PROBES, ids=PROBE_IDS)
def test_metric_names_follow_the_convention_and_units_are_declared(cls: type[Any]) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.name), cls.name
    metrics = cls.METRICS
    assert isinstance(metrics, dict)
    assert metrics, f"{cls.__name__} declares no metrics"
    for template, declared in metrics.items():
        unit, description = declared
        assert unit in KNOWN_UNITS, f"{template}: unknown unit {unit!r}"
        assert description and "\n" not in description, template
        name = example_of(template)
        assert "<" not in name, f"{template}: a placeholder probes/__init__.py does not know"
        assert NAME.fullmatch(name), f"{template} is not <resource>.<what>_<unit>"
        assert unit_in_name(name) == unit, f"{template} is declared in {unit!r}"
        # Registered in probes.UNITS (documented, and known to unit_of) with this unit.
        assert UNITS.get(template) == unit, f"{template} is missing from probes.UNITS"
        assert family_of(name) == template
        assert unit_of(name) == unit


@pytest.mark.parametrize(("cls", "scenario"), RUNNING_CASES)
def test_samples_of_a_real_target_are_flat_dicts_of_finite_numbers(
    cls: type[Any], scenario: Running, lab: Lab
) -> None:
    before = held()
    probe = scenario.build(lab)
    seen: set[str] = set()
    samples = 0
    try:
        assert isinstance(probe, Probe)
        assert isinstance(probe, cls)
        check_metrics(cls, probe.sample(time.monotonic(), []))  # no target
        deadline = time.monotonic() + scenario.timeout
        while not probe.unavailable:
            procs = lab.target.processes() if lab.target is not None else []
            metrics = probe.sample(time.monotonic(), procs)
            check_metrics(cls, metrics)
            samples += 1
            seen.update(family_of(name) or name for name in metrics)
            got_all = scenario.expect <= seen if scenario.expect else bool(seen)
            if (got_all and samples >= 3) or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # rates need time to pass between samples
        partly = getattr(probe, "partly_unavailable", None)
        if partly is not None:
            assert isinstance(partly, dict)
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in partly.items())
    finally:
        close_twice(probe)
        lab.stop()
    assert_released(before, f"{cls.__name__} after close()")
    reason = probe.unavailable
    if reason is not None:
        if any(why in reason for why in scenario.unavailable_here):
            pytest.skip(f"{cls.__name__} cannot run on this host: {reason}")
        pytest.fail(f"{cls.__name__} gave up after {samples} samples: {reason}")
    assert seen, f"{cls.__name__} reported nothing within {scenario.timeout:g} s"
    missing = scenario.expect - seen
    assert not missing, f"not reported within {scenario.timeout:g} s: {sorted(missing)}"


@pytest.mark.parametrize(("cls", "scenario"), FIRST_CASES)
def test_close_twice_without_a_sample_leaves_nothing_behind(
    cls: type[Any], scenario: Running, lab: Lab
) -> None:
    before = held()
    probe = scenario.build(lab)
    try:
        close_twice(probe)
    finally:
        lab.stop()
    assert_released(before, f"{cls.__name__} closed without sampling")


def test_every_probe_has_a_way_to_say_it_cannot_run() -> None:
    for cls in PROBES:
        assert cls.__name__ in CANNOT_RUN or cls.__name__ in ALWAYS_RUNS, (
            f"add to CANNOT_RUN in {Path(__file__).name} a case where {cls.__name__} cannot "
            "run (and check that it says why), or to ALWAYS_RUNS why it always can"
        )


@pytest.mark.parametrize(("cls", "case"), CANNOT_RUN_CASES)
def test_a_probe_that_cannot_run_says_why_through_the_sampler(
    cls: type[Any], case: CannotRun, lab: Lab
) -> None:
    before = held()
    probe = case.build(lab)
    assert isinstance(probe, cls)
    key = probe.name if case.part is None else f"{probe.name}.{case.part}"
    sampler = Sampler(lab.target, 0.1, probes=[probe])
    deadline = time.monotonic() + case.timeout
    try:
        while key not in sampler.unavailable and time.monotonic() < deadline:
            check_metrics(cls, sampler.sample_once().metrics)
            time.sleep(0.05)
    finally:
        sampler.stop()  # closes the probe...
        close_twice(probe)  # ...which may then be closed again
        lab.stop()
    assert_released(before, f"{cls.__name__} that could not run, after close()")
    reason = sampler.unavailable.get(key)
    assert reason, f"{cls.__name__} did not say within {case.timeout:g} s that it cannot run"
    assert not reason.startswith(f"{probe.name} probe failed:"), f"it raised: {reason}"
    own = probe.unavailable if case.part is None else probe.partly_unavailable.get(case.part)
    assert own == reason, "the reason is one line, and the one the sampler reports"
    assert len(reason.split()) >= 4, f"not a readable reason: {reason!r}"
