"""The benchmarks stay runnable: every script in benchmarks/ answers `--help` (so it imports,
against the tracker package as it is now) quickly and without starting anything; and the
process helpers they share (benchmarks/_support.py) work against real subprocesses.

The scripts are found by globbing, so a new benchmark is covered without touching this file;
private modules (`_peers.py`, `_support.py`) are helpers, not scripts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil
import pytest

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
HELP_TIMEOUT_S = 60.0


def test_the_benchmark_scripts_are_found() -> None:
    assert len(SCRIPTS) >= 5, SCRIPTS  # an empty glob would parametrize no test at all


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_exits_0_with_a_usage_line(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT_S,
        check=False,
    )
    said = f"stdout:\n{done.stdout[-1500:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, said
    assert done.stdout.startswith(f"usage: {script.name}"), said


# -- benchmarks/_support.py --------------------------------------------------------------


@pytest.fixture(scope="module")
def support() -> ModuleType:
    """benchmarks/_support.py, loaded from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("benchmarks_support", BENCHMARKS / "_support.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


READY = "print('ready', flush=True)\n"
LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "time.sleep(60)\n"
)
IGNORES_TERM = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
# A leader that exits on SIGTERM, with a child that ignores it (so only SIGKILL stops it);
# the child prints its pid once it ignores SIGTERM.
CHILD = (
    "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(os.getpid(), flush=True); time.sleep(60)"
)
FAMILY = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen([sys.executable, '-c', {CHILD!r}])\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[str]]]:
    """Children the test starts, each leading a process group: the groups are killed
    whatever happens."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def start(procs: list[subprocess.Popen[str]], code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(proc)
    return proc


def gone(pid: int, within_s: float = 5.0) -> bool:
    """The process has exited (a zombie not yet reaped by init counts as exited)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def test_free_port_is_a_loopback_port_a_server_can_take(support: ModuleType, spawned) -> None:
    port = support.free_port()
    assert 0 < port < 65536
    server = start(spawned, LISTENER, str(port))
    support.wait_port(port, timeout=10.0)  # returns once the child listens there
    support.stop_process(server, grace_s=5.0)
    assert server.returncode == -signal.SIGTERM
    with pytest.raises(RuntimeError, match="nothing listens"):
        support.wait_port(port, timeout=0.3)


def test_stop_process_terminates_within_the_grace(support: ModuleType, spawned) -> None:
    proc = start(spawned, READY + "import time; time.sleep(60)")
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    t0 = time.monotonic()
    support.stop_process(proc, grace_s=5.0)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - t0 < 4.0


def test_stop_process_kills_what_ignores_the_signal(support: ModuleType, spawned) -> None:
    proc = start(spawned, IGNORES_TERM + READY + "time.sleep(60)")
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    t0 = time.monotonic()
    support.stop_process(proc, signal.SIGTERM, 0.3)
    assert proc.returncode == -signal.SIGKILL
    assert 0.3 <= time.monotonic() - t0 < 4.0


def test_stop_process_leaves_an_exited_process_alone(support: ModuleType, spawned) -> None:
    proc = start(spawned, "pass")
    proc.wait(timeout=10)
    support.stop_process(proc, grace_s=0.1)
    support.stop_process(proc, grace_s=0.1, group=True)
    assert proc.returncode == 0


def test_stop_process_group_stops_the_leaders_children(support: ModuleType, spawned) -> None:
    leader = start(spawned, FAMILY)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    assert not gone(child, within_s=0.1)
    support.stop_process(leader, grace_s=5.0, group=True)
    assert leader.returncode == -signal.SIGTERM
    assert gone(child), "the leader's child outlived stop_process(group=True)"


def test_example_server_answers_on_loopback_and_is_stopped(
    support: ModuleType, tmp_path: Path
) -> None:
    with support.example_server(tmp_path, ["--max-batch", "4", "--step-ms", "1"]) as server:
        assert server.base_url.startswith(f"http://127.0.0.1:{server.port}")
        with urllib.request.urlopen(server.base_url + "/health", timeout=10) as response:
            assert response.status == 200
        proc = server.proc
    assert proc.returncode is not None  # stopped (and reaped) on the way out
    assert "listening on http://127.0.0.1:" in (tmp_path / "server.log").read_text()
