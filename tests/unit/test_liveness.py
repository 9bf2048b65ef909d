"""A `running` run whose process is gone reads as abandoned; one that cannot be judged
(another host, no process recorded) stays running."""

from __future__ import annotations

import socket
import subprocess
import sys

import psutil

from tracker.store.liveness import live_status, this_process


def test_this_process_is_alive_and_a_finished_one_is_abandoned() -> None:
    here = {"host": socket.gethostname(), "process": this_process()}
    assert live_status("running", here) == "running"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {"host": socket.gethostname(), "process": {"pid": child.pid, "started": 0.0}}
    assert live_status("running", gone) == "abandoned"
    # A pid reused by another process (other start time) is not the run's process.
    reused = {
        **here,
        "process": {**here["process"], "started": psutil.Process().create_time() - 100},
    }
    assert live_status("running", reused) == "abandoned"


def test_what_cannot_be_judged_here_stays_as_stored() -> None:
    other_host = {"host": "some-other-host.example", "process": {"pid": 1, "started": 0.0}}
    assert live_status("running", other_host) == "running"
    assert live_status("running", {"host": socket.gethostname()}) == "running"  # older run
    assert live_status("completed", {}) == "completed"
