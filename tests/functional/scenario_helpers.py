"""Write a scenario file and run it with the real CLI; read back what was stored."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

from cli_helpers import perfsleuth


def run_scenario(
    tmp_path: Path, toml: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 90
) -> tuple[int, dict[str, Any] | None, str, str]:
    """(exit code, run JSON or None, stdout, stderr) of `perfsleuth run scenario.toml`."""
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(textwrap.dedent(toml))
    out = tmp_path / "run.json"
    out.unlink(missing_ok=True)
    done = perfsleuth(
        "run", str(scenario), "--json", str(out), "--db", f"sqlite:///{tmp_path / 'runs.db'}",
        *extra, cwd=tmp_path, timeout=timeout, env=env,
    )  # fmt: skip
    doc = json.loads(out.read_text()) if out.exists() else None
    return done.returncode, doc, done.stdout, done.stderr


def windows(tmp_path: Path, run_id: int) -> list[dict[str, Any]]:
    con = sqlite3.connect(tmp_path / "runs.db")
    con.row_factory = sqlite3.Row
    rows = con.execute("select * from windows where run_id=? order by idx", (run_id,)).fetchall()
    return [dict(r) for r in rows]
