"""`run --launch` fits each runtime's GC probe: Go (gctrace through stderr), Python (agent)."""

from __future__ import annotations

import sys

from cli_helpers import perfsleuth, show_json
from support.go_build import build_go_server
from support.llm_server import free_port

from probes.runtimes import is_go_program, is_python_program, program_path


def test_a_launched_go_server_reports_gc_pauses_and_keeps_its_own_stderr(tmp_path):
    binary = build_go_server(tmp_path)
    assert is_go_program(str(binary)) and not is_go_program(sys.executable)
    port = free_port()  # outside the ephemeral range: no connection takes it meanwhile
    db = f"sqlite:///{tmp_path / 'r.db'}"
    done = perfsleuth(
        "run", "--url", f"http://127.0.0.1:{port}/", "--users", "2", "--duration", "3s",
        "--launch", f"{binary} -port {port} -stderr-lines 2", "--db", db, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = show_json(db, "latest", tmp_path)
    gc = doc["probes"]
    assert gc["gc.collections_per_s"]["mean"] > 0, gc.get("gc.collections_per_s")
    assert gc["gc.pause_ms_per_s"]["max"] > 0
    assert "gc_go" not in doc["probes_unavailable"]
    # The server's own stderr reaches the user; the gctrace lines perfsleuth asked for do not.
    assert "gcserver: own stderr line 1" in done.stderr
    assert not any(line.startswith("gc ") for line in done.stderr.splitlines())


def test_program_kinds_are_recognised(tmp_path):
    script = tmp_path / "serve"
    script.write_text("#!/usr/bin/env python3\nprint('hi')\n")
    script.chmod(0o755)
    assert is_python_program(sys.executable)
    assert is_python_program(str(script))
    assert not is_python_program("/bin/sh")
    assert program_path("no-such-program-here") is None
    assert program_path("sh") is not None
