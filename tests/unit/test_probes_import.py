"""The probes package stays light: stdlib and psutil only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import probes

REPO_ROOT = Path(probes.__file__).resolve().parent.parent


def test_importing_probes_pulls_no_heavy_or_tracker_modules() -> None:
    code = (
        "import sys, probes\n"
        "heavy = {'tracker', 'textual', 'sqlalchemy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, timeout=30
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "[]"


def test_public_api() -> None:
    assert {"Target", "Sampler", "ProbeSample", "ProbeError", "default_probes", "METRICS"} <= set(
        probes.__all__
    )
    assert all(hasattr(probes, name) for name in probes.__all__)
