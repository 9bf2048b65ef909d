"""Target: finding, following and terminating real process trees."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable

import psutil
import pytest
from support.processes import Spawn

from probes import ProbeError, Target

GRANDCHILD_SLEEPER = "import time; time.sleep(1.0)"
# Root that, after a delay, forks two workers which each fork a grandchild.
FORKING_ROOT = f"""
import subprocess, sys, time
time.sleep(0.3)
worker = "import subprocess, sys; subprocess.run([sys.executable, '-c', {GRANDCHILD_SLEEPER!r}])"
kids = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(2)]
for kid in kids:
    kid.wait()
time.sleep(30)
"""


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_from_pid_follows_descendants_as_they_come_and_go(spawn: Spawn) -> None:
    root = spawn(FORKING_ROOT)
    target = Target.from_pid(root.pid)
    assert [p.pid for p in target.processes()] == [root.pid]

    assert wait_until(lambda: len(target.processes()) == 5), target.processes()
    pids = {p.pid for p in target.processes()}
    assert root.pid in pids
    assert all(psutil.Process(pid).create_time() > 0 for pid in pids)

    assert wait_until(lambda: len(target.processes()) == 1), target.processes()
    assert target.alive
    assert target.death_reason is None


def test_from_pid_rejects_missing_pid() -> None:
    pid = 999_999
    if psutil.pid_exists(pid):
        pytest.skip(f"pid {pid} happens to exist on this host")
    with pytest.raises(ProbeError, match=r"no process with pid 999999: check the pid with `ps`"):
        Target.from_pid(pid)
    with pytest.raises(ProbeError, match="invalid pid"):
        Target.from_pid(0)


def test_from_name_finds_process_by_command_line_marker(spawn: Spawn) -> None:
    marker = f"perfsleuth-test-{uuid.uuid4().hex}"
    proc = spawn("import time; time.sleep(30)", marker)
    target = Target.from_name(marker)
    assert target.pid == proc.pid
    assert target.selection_note is None
    assert not target.owned


def test_from_name_picks_oldest_root_and_says_so(spawn: Spawn) -> None:
    marker = f"perfsleuth-test-{uuid.uuid4().hex}"
    # The first tree's worker carries the marker too; it must not count as a root.
    parent_code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', sys.argv[1]])\n"
        "time.sleep(30)\n"
    )
    oldest = spawn(parent_code, marker)
    assert wait_until(lambda: len(psutil.Process(oldest.pid).children()) == 1)
    time.sleep(0.05)  # distinct create_time (clock-tick resolution)
    newer = spawn("import time; time.sleep(30)", marker)

    target = Target.from_name(marker)
    assert target.pid == oldest.pid
    assert target.selection_note is not None
    assert "2 process trees match" in target.selection_note
    assert str(newer.pid) in target.selection_note


def test_from_name_without_match_explains() -> None:
    marker = f"perfsleuth-absent-{uuid.uuid4().hex}"
    with pytest.raises(ProbeError, match=rf"no process name or command line contains '{marker}'"):
        Target.from_name(marker)
    with pytest.raises(ProbeError, match="empty process pattern"):
        Target.from_name("")


def test_launch_terminate_kills_the_tree() -> None:
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    target = Target.launch([sys.executable, "-c", code])
    try:
        assert target.owned
        assert wait_until(lambda: len(target.processes()) == 2)
        child = target.processes()[1]
        started = time.monotonic()
        target.terminate(timeout=3)
        assert time.monotonic() - started < 3
        assert not target.alive
        assert target.death_reason == "killed by signal SIGTERM"
        assert target.processes() == []
        assert wait_until(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)
    finally:
        target.terminate(timeout=1)


def test_launch_passes_env_and_reports_exit_code() -> None:
    code = (
        "import os, sys; sys.exit(3 if os.environ['PS_X'] == '1' and 'PATH' in os.environ else 4)"
    )
    with Target.launch([sys.executable, "-c", code], env={"PS_X": "1"}) as target:
        assert wait_until(lambda: not target.alive)
        assert target.death_reason == "exited with code 3"
        assert target.processes() == []


def test_launch_missing_program_explains() -> None:
    with pytest.raises(ProbeError, match="command not found"):
        Target.launch(["perfsleuth-no-such-program-xyz"])
    with pytest.raises(ProbeError, match="empty command"):
        Target.launch([])


def test_terminate_refuses_foreign_process(spawn: Spawn) -> None:
    proc = spawn("import time; time.sleep(30)")
    target = Target.from_pid(proc.pid)
    with pytest.raises(ProbeError, match="did not start it"):
        target.terminate()
    target.close()  # a no-op for foreign processes
    assert target.alive


def test_death_reason_of_foreign_process(spawn: Spawn) -> None:
    proc = spawn("import sys, time; time.sleep(0.2); sys.exit(3)")
    target = Target.from_pid(proc.pid)
    # Unreaped, it is a zombie whose exit status /proc still shows.
    assert wait_until(lambda: not target.alive)
    assert target.death_reason == "exited with code 3"
    proc.wait(timeout=5)
    assert target.death_reason == "exited with code 3"  # remembered after reaping
    with pytest.raises(ProbeError, match=f"no process with pid {proc.pid}"):
        Target.from_pid(proc.pid)

    gone = spawn("import time; time.sleep(30)")
    gone_target = Target.from_pid(gone.pid)
    gone.kill()
    gone.wait(timeout=5)
    assert not gone_target.alive
    assert gone_target.death_reason == f"process {gone.pid} vanished"
    assert gone_target.processes() == []
