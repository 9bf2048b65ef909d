"""DESIGN.md §1 import boundaries, checked in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_probes_never_import_tracker_textual_or_sqlalchemy():
    for path in _modules_of("probes"):
        assert not _imported_modules(path) & {"tracker", "textual", "sqlalchemy", "alembic"}, path


def test_only_the_store_and_migrations_import_sqlalchemy():
    for path in _modules_of("tracker"):
        if "store" in path.relative_to(ROOT / "tracker").parts:
            continue
        assert not _imported_modules(path) & {"sqlalchemy", "alembic"}, path


def test_only_the_tui_imports_textual():
    for path in _modules_of("tracker"):
        if "tui" in path.relative_to(ROOT / "tracker").parts:
            continue
        assert "textual" not in _imported_modules(path), path


def test_the_driver_sends_through_perfsleuths_transport_not_httpx():
    allowed = {ROOT / "tracker/transport/httpx_adapter.py", ROOT / "tracker/demo.py"}
    for path in _modules_of("tracker"):
        if path not in allowed:
            assert "httpx" not in _imported_modules(path), path


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("tracker", {"sqlalchemy", "textual", "httpx", "click"}),
        ("probes", {"tracker", "sqlalchemy", "textual"}),
        # Analysis is computation over plain records: no database, screen or CLI.
        ("tracker.analysis.compare", {"sqlalchemy", "textual", "click", "httpx"}),
        ("tracker.analysis.changepoints", {"sqlalchemy", "textual", "click", "httpx"}),
    ],
)
def test_importing_the_package_stays_cheap(module, forbidden):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not {m.split(".")[0] for m in loaded} & forbidden
