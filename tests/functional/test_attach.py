"""`perfsleuth attach`: probes only, against real processes; stored like any run."""

from __future__ import annotations

import json
import signal
import time

from cli_helpers import perfsleuth, show_json, start_perfsleuth
from support.processes import Spawn

HOG = "import sys\nwhile True:\n    pass\n"


def test_attach_by_pid_stores_a_probe_only_run(spawn: Spawn, tmp_path):
    hog = spawn(HOG)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    out = tmp_path / "attach.json"
    done = perfsleuth(
        "attach", str(hog.pid), "--duration", "2s", "--json", str(out), "--db", db, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "completed"
    assert doc["scenario"].startswith("attach python") and doc["scenario"].endswith(f"[{hog.pid}]")
    assert doc["load"] == {} and doc["requests"]["total"] == 0 and doc["llm"] is None
    probes = doc["probes"]
    assert probes["cpu.process_pct"]["mean"] > 40, probes["cpu.process_pct"]
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
    short = spawn("import time\ntime.sleep(1.0)\n")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    done = perfsleuth("attach", str(short.pid), "--duration", "2.5s", "--db", db, cwd=tmp_path)
    assert done.returncode == 4, done.stderr
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "failed" and "died" in doc["error"]
    assert any("host metrics continue" in e["note"] for e in doc["probe_events"])
    assert doc["duration_s"] >= 2.4  # it went on to the end with host metrics


def test_bad_attach_input_is_one_line_and_exit_2(tmp_path):
    for args, needle in (
        ([], "give a PID or --name"),
        (["999999999"], "999999999"),
        (["1", "--name", "x"], "give a PID or --name"),
        (["1", "--duration", "0s"], "--duration"),
        (["1", "--probe-interval", "1ms"], "--probe-interval"),
    ):
        done = perfsleuth("attach", *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert needle in done.stderr.strip().splitlines()[-1], (args, done.stderr)
