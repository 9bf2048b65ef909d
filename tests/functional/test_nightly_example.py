"""examples/nightly/nightly.sh works as shipped: two short nights, reports written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from support.llm_server import free_port

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "nightly" / "nightly.sh"


def _night(tmp_path: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PERFSLEUTH": str(Path(sys.executable).parent / "perfsleuth"),
        "PYTHON": sys.executable,
        "PERFSLEUTH_DB": f"sqlite:///{tmp_path / 'history.db'}",
        "DURATION": "3s",
        "PORT": str(port),
        "OUT": str(tmp_path / "report"),
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_two_nights_compare_and_write_reports(tmp_path: Path) -> None:
    port = free_port()
    first = _night(tmp_path, port)
    # The first night has no history: nothing to compare with, so it passes.
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no comparable baseline" in (tmp_path / "report" / "report.md").read_text()
    second = _night(tmp_path, port)
    assert second.returncode in (0, 1), second.stdout + second.stderr
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.startswith("### perfsleuth:") and "last:5 (run 1)" in report
    suite = ET.parse(tmp_path / "report" / "report.xml").getroot()
    assert suite.tag == "testsuite" and int(suite.get("tests", "0")) >= 5
    assert (tmp_path / "report" / "compare.json").exists()
