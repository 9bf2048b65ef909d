"""Stack samples end to end: attach to a Python process, top functions, export."""

from __future__ import annotations

import json

from cli_helpers import perfsleuth, show_json
from support.processes import Spawn

HOT = """
import time
def hot_loop():
    x = 0
    end = time.monotonic() + 60
    while time.monotonic() < end:
        x += 1
hot_loop()
"""


def test_attach_profiles_a_python_process_and_exports_speedscope(spawn: Spawn, tmp_path):
    hot = spawn(HOT)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    done = perfsleuth("attach", str(hot.pid), "--duration", "3.5s", "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = show_json(db, "latest", tmp_path)
    stacks = doc["stacks"]
    assert stacks is not None and stacks["samples"] >= 50, stacks
    assert stacks["top_self"][0]["function"].startswith("hot_loop"), stacks
    assert stacks["top_self"][0]["pct"] > 80
    assert doc["probes"]["py.gil_held_pct"]["mean"] > 80
    assert "hot_loop" in done.stdout  # the summary says where the time went

    out = tmp_path / "profile.speedscope.json"
    exported = perfsleuth("export", "latest", "--out", str(out), "--db", db, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(out.read_text())
    assert document["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    (profile,) = document["profiles"]
    assert profile["type"] == "sampled"
    assert sum(profile["weights"]) == stacks["samples"]
    names = {document["shared"]["frames"][i]["name"] for s in profile["samples"] for i in s}
    assert "hot_loop" in names

    collapsed = perfsleuth(
        "export", "latest", "--format", "collapsed", "--out", "-", "--db", db, cwd=tmp_path
    )
    assert collapsed.returncode == 0, collapsed.stderr
    lines = collapsed.stdout.strip().splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == stacks["samples"]


def test_export_of_a_run_without_stacks_is_one_clear_line(spawn: Spawn, tmp_path):
    sleeper = spawn("import time\ntime.sleep(60)\n")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    perfsleuth("attach", str(sleeper.pid), "--duration", "1s", "--db", db, cwd=tmp_path)
    # A sleeping interpreter holds the GIL at no sampled instant: no stacks to export.
    done = perfsleuth("export", "latest", "--out", str(tmp_path / "x.json"), "--db", db,
                      cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "has no stack samples" in done.stderr.strip().splitlines()[-1]
