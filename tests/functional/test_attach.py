"""`perfsleuth attach`: probes only, against real processes; stored like any run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cli_helpers import perfsleuth, show_json, start_perfsleuth
from support.processes import Spawn

HOG = "import sys\nwhile True:\n    pass\n"


def test_attach_by_pid_stores_a_probe_only_run(spawn: Spawn, tmp_path):
    import psutil

    hog = spawn(HOG)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    out = tmp_path / "attach.json"
    charged = psutil.Process(hog.pid)
    cpu_before, wall_before = sum(charged.cpu_times()[:2]), time.monotonic()
    done = perfsleuth(
        "attach", str(hog.pid), "--duration", "2s", "--json", str(out), "--db", db, cwd=tmp_path
    )
    used = (sum(charged.cpu_times()[:2]) - cpu_before) / (time.monotonic() - wall_before) * 100
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "completed"
    assert doc["scenario"].startswith("attach python") and doc["scenario"].endswith(f"[{hog.pid}]")
    assert doc["load"] == {} and doc["requests"]["total"] == 0 and doc["llm"] is None
    probes = doc["probes"]
    # A busy loop gets what it can of a core: on a shared machine that may be little, so the
    # bar follows the CPU time the kernel charged it meanwhile (~100% on an idle machine).
    assert probes["cpu.process_pct"]["mean"] > min(40, 0.5 * used), (probes, used)
    assert f"cpu.pid{hog.pid}_pct" in probes
    assert probes["mem.rss_mb"]["mean"] > 1
    assert doc["environment"]["host"]
    # Progress lines while it ran, and the same document from the store afterwards.
    assert sum(line.startswith("[") for line in done.stderr.splitlines()) >= 1
    assert "requests" not in done.stdout and "cpu.process_pct" in done.stdout
    assert show_json(db, str(doc["run_id"]), tmp_path) == doc


def test_attach_by_name_until_ctrl_c_is_a_completed_run(spawn: Spawn, tmp_path):
    marker = f"perfsleuth-attach-{time.monotonic_ns()}"
    spawn(f"import time\n# {marker}\ntime.sleep(60)\n", marker)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    proc = start_perfsleuth("attach", "--name", marker, "--db", db, cwd=tmp_path)
    assert proc.stderr is not None
    seen = [proc.stderr.readline() for _ in range(2)]  # two progress lines: ~2 s sampled
    assert all(line.startswith("[") for line in seen), seen
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "completed"
    assert doc["duration_s"] > 1.5
    assert "cpu.threads" in doc["probes"]


def test_target_death_is_survived_and_fails_the_run(spawn: Spawn, tmp_path):
    short = spawn("import time\ntime.sleep(60)\n")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    proc = start_perfsleuth(
        "attach", str(short.pid), "--duration", "2.5s", "--db", db, cwd=tmp_path
    )
    assert proc.stderr is not None
    # Killed once it is being sampled (the first progress line), not after a fixed time:
    # a busy machine can take longer than that to start perfsleuth.
    first = proc.stderr.readline()
    assert first.startswith("["), first
    short.kill()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, first + err
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "failed" and "died" in doc["error"]
    assert any("host metrics continue" in e["note"] for e in doc["probe_events"])
    assert doc["duration_s"] >= 2.4  # it went on to the end with host metrics


def test_bad_attach_input_is_one_line_and_exit_2(tmp_path):
    for args, needle in (
        ([], "give a PID, --name NAME or --agent URL"),
        (["999999999"], "999999999"),
        (["1", "--name", "x"], "give a PID, --name NAME or --agent URL"),
        (["1", "--duration", "0s"], "--duration"),
        (["1", "--probe-interval", "1ms"], "--probe-interval"),
    ):
        done = perfsleuth("attach", *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert needle in done.stderr.strip().splitlines()[-1], (args, done.stderr)


def _run_as_nobody(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "tracker", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_without_rights_over_the_target_the_rest_runs_and_says_why(spawn: Spawn, request):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to start a process another user cannot ptrace) and setpriv")
    # pytest's own tmp_path lives under a directory only root may enter.
    tmp_path = Path(tempfile.mkdtemp(prefix="perfsleuth-nobody-"))
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    tmp_path.chmod(0o777)
    if _run_as_nobody("--version", cwd=tmp_path).returncode != 0:
        pytest.skip("the unprivileged user cannot run this Python environment")
    root_owned = spawn("import time\ntime.sleep(60)\n")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    out = tmp_path / "a.json"
    done = _run_as_nobody(
        "attach", str(root_owned.pid), "--duration", "1.5s", "--json", str(out), "--db", db,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    doc = json.loads(out.read_text())
    unavailable = doc["probes_unavailable"]
    # /proc/<pid>/io and smaps need ptrace rights: those parts say why, one line each...
    assert "permission denied" in unavailable["proc_io"]
    assert "permission denied" in unavailable["memory.uss_pss"]
    assert all("\n" not in reason for reason in unavailable.values())
    assert "probe proc_io unavailable: permission denied" in done.stdout
    # ...and everything world-readable still runs.
    probes = doc["probes"]
    assert "mem.rss_mb" in probes and "mem.uss_mb" not in probes
    assert "cpu.process_pct" in probes and "cpu.ctx_switches_voluntary_per_s" in probes
    # A database where this user cannot write is one clear line, before anything runs.
    refused = _run_as_nobody(
        "attach", str(root_owned.pid), "--db", "sqlite:////root/p.db", cwd=tmp_path
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("perfsleuth: error: --db: ")
