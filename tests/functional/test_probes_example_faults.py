"""The example server's faults, seen by the probes of `run --attach` (a server already up).

io: the target's write bytes and the host's disk write IOPS rise. (gc: the py-spy
estimate of GC time rising is part of tests/functional/test_attribution_faults.py, which
checks it as evidence of the cause; the exact agent is tested with launched targets in
tests/functional/test_probes_gc_python.py.)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import pytest
from cli_helpers import perfsleuth, show_json
from support.filesystems import on_tmpfs
from support.llm_server import running_llm_server

BODY = json.dumps({"prompt": "one two three", "max_tokens": 4, "stream": False})


@pytest.fixture(scope="module")
def server():
    with running_llm_server() as handle:
        yield handle


def _probes_with_fault(server, fault: str, tmp_path: Path, seconds: str = "7s") -> dict:
    httpx.post(f"{server.url}/admin/fault", json={"fault": fault}, timeout=5)
    try:
        db = f"sqlite:///{tmp_path / f'{fault}.db'}"
        done = perfsleuth(
            "run", "--url", f"{server.url}/v1/completions", "--rate", "4", "--duration",
            seconds, "--body", BODY, "--attach", str(server.pid), "--db", db, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return dict(show_json(db, "latest", tmp_path)["probes"])
    finally:
        httpx.post(f"{server.url}/admin/fault", json={"fault": "none"}, timeout=5)


def test_the_io_fault_raises_the_servers_writes_and_disk_iops(server, tmp_path):
    if on_tmpfs(tempfile.gettempdir()):
        pytest.skip("the temp dir is on tmpfs: the fault's fsync'd writes never reach a disk")
    calm = _probes_with_fault(server, "none", tmp_path, "4s")
    spill = _probes_with_fault(server, "io", tmp_path, "4s")
    assert spill["proc.io_write_mb_per_s"]["mean"] > 0.2, spill["proc.io_write_mb_per_s"]
    assert spill["proc.io_write_mb_per_s"]["mean"] > 5 * calm["proc.io_write_mb_per_s"]["mean"]
    if "disk.write_iops" in spill:
        assert spill["disk.write_iops"]["mean"] > calm["disk.write_iops"]["mean"] + 20
