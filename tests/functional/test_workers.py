"""`--workers N`: several driver processes share one schedule; results merge exactly."""

from __future__ import annotations

import json

import pytest
from cli_helpers import perfsleuth
from scenario_helpers import run_scenario, windows
from support.sample_app import running_sample_app


@pytest.fixture(scope="module")
def app():
    with running_sample_app() as url:
        yield url


def _toml(app: str, load: str, extra: str = "") -> str:
    return f'name = "w"\nurl = "{app}"\n[load]\n{load}\n[[requests]]\npath = "/ok"\n{extra}'


def test_two_workers_send_exactly_the_one_schedule(app, tmp_path):
    code, doc, _, err = run_scenario(
        tmp_path, _toml(app, 'rate = 40\nduration = "3s"\nworkers = 2')
    )
    assert code == 0, err
    assert doc["requests"]["total"] == 120
    assert doc["latency_ms"]["count"] == 120  # histograms from both workers merged
    rows = windows(tmp_path, doc["run_id"])
    sent = [w["sent"] for w in rows]
    # 40 a second (a send due just before a window's end may go out in the next one on a
    # busy machine), and every send in some window.
    assert all(abs(n - 40) <= 2 for n in sent[:3]) and sum(sent) == 120, sent
    assert [w["idx"] for w in rows] == list(range(len(rows)))


def test_poisson_schedule_is_the_same_with_one_or_three_workers(app, tmp_path):
    load = 'rate = 50\nduration = "3s"\narrival = "poisson"\nseed = 11'
    totals = []
    for workers in (1, 3):
        code, doc, _, err = run_scenario(tmp_path, _toml(app, f"{load}\nworkers = {workers}"))
        assert code == 0, err
        totals.append(doc["requests"]["total"])
    assert totals[0] == totals[1]


def test_users_and_unique_rows_are_split_across_workers(app, tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(7)))
    toml = f"""
name = "w"
url = "{app}"
[datasets.d]
file = "d.jsonl"
mode = "unique"
[load]
users = 3
duration = "2s"
workers = 2
[[requests]]
path = "/echo"
dataset = "d"
json = {{n = "{{{{ n }}}}"}}
"""
    code, doc, _, err = run_scenario(tmp_path, toml)
    assert code == 0, err
    # Seven unique rows across two workers' disjoint shards: each row sent once.
    assert doc["requests"]["total"] == 7


def test_workers_flag_with_url(app, tmp_path):
    out = tmp_path / "r.json"
    done = perfsleuth(
        "run", "--url", app + "/ok", "--users", "4", "--duration", "2s", "--workers", "2",
        "--json", str(out), "--db", f"sqlite:///{tmp_path / 'r.db'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["requests"]["ok"] > 20
    assert doc["load"]["workers"] == 2


def test_ctrl_c_stops_every_worker_and_keeps_the_run(app, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import psutil
    from cli_helpers import read_until_counted, show_json

    db = f"sqlite:///{tmp_path / 'r.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "run", "--url", app + "/ok", "--rate", "20",
         "--duration", "60s", "--workers", "2", "--db", db],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        # Once 40 answers are in, however long a busy machine takes to start the workers.
        seen = read_until_counted(proc, "ok", 40)
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole group
        _, stderr = proc.communicate(timeout=30)
        stderr = seen + stderr
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    doc = show_json(db, "latest", tmp_path)
    assert doc["status"] == "interrupted"
    assert doc["requests"]["ok"] >= 40
