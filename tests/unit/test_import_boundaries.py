"""The import rules between perfsleuth's layers (docs/architecture.md, "Layers"), checked
on the source and, for start-up cost, in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_dotted(path: Path) -> set[str]:
    """Every module `path` imports, in full (`tracker.store.writer`), at any depth of the
    file (imports inside functions and TYPE_CHECKING blocks count too)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from tracker import reports` imports the module tracker.reports.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imported_modules(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_dotted(path)}


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
    # The agent feed is no load: a stream of samples and a few clock round trips.
    allowed = {
        ROOT / "tracker/transport/httpx_adapter.py",
        ROOT / "tracker/demo/example_server.py",
        ROOT / "tracker/recording/agent_feed.py",
    }
    for path in _modules_of("tracker"):
        if path not in allowed:
            assert "httpx" not in _imported_modules(path), path


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# (importing layer, layers it must not import, why)
LAYER_RULES = [
    ("tracker.tui", ["tracker.cli"], "the screens are called by commands, never the reverse"),
    (
        "tracker.scenario",
        ["tracker.driver", "tracker.store", "tracker.recording", "tracker.cli"],
        "a scenario is a description; the driver runs it",
    ),
    (
        "tracker.recording",
        ["tracker.regressions", "tracker.cli"],
        "recording a run does not resolve baselines or parse flags",
    ),
    (
        "tracker.analysis",
        ["tracker.store", "tracker.recording", "tracker.cli", "tracker.tui", "tracker.reports"],
        "analysis is computation over plain records",
    ),
    ("tracker.records", ["tracker.store", "tracker.analysis"], "records are neutral ground"),
    (
        "tracker.driver",
        ["tracker.store", "tracker.recording", "tracker.cli", "tracker.tui", "tracker.analysis"],
        "the driver drives load and fills windows, nothing more",
    ),
    (
        "tracker.reports",
        ["tracker.store", "tracker.recording", "tracker.cli", "tracker.tui"],
        "a format renders a document it is given",
    ),
    (
        "tracker.store",
        ["tracker.analysis", "tracker.recording", "tracker.cli", "tracker.tui", "tracker.reports"],
        "the store keeps records; it does not interpret them",
    ),
    ("tracker.regressions", ["tracker.cli", "tracker.tui", "tracker.recording"], ""),
    ("tracker.documents", ["tracker.cli", "tracker.tui", "tracker.recording"], ""),
    ("tracker.transport", ["tracker.driver", "tracker.scenario", "tracker.store"], ""),
    (
        "tracker.agent",
        ["tracker.store", "tracker.recording", "tracker.tui", "tracker.analysis"],
        "the agent probes and serves; it never needs the database",
    ),
]


@pytest.mark.parametrize(("layer", "forbidden", "why"), LAYER_RULES, ids=lambda v: str(v)[:30])
def test_layers_import_only_downwards(layer, forbidden, why):
    folder = ROOT / Path(*layer.split("."))
    assert folder.is_dir(), f"{layer} is gone: update LAYER_RULES and docs/architecture.md"
    for path in sorted(folder.rglob("*.py")):
        for name in _imported_dotted(path):
            bad = [f for f in forbidden if _under(name, f)]
            assert not bad, f"{path.relative_to(ROOT)} imports {name} ({why})"


def test_the_top_of_the_tracker_package_holds_only_shared_basics():
    """New modules go into the layer they belong to (docs/architecture.md, "Where a
    change goes"), not beside these."""
    loose = sorted(p.name for p in (ROOT / "tracker").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "_lazy.py", "_resources.py", "errors.py",
                     "units.py"]  # fmt: skip


PUBLIC_PACKAGES = ["tracker.driver", "tracker.analysis", "tracker.tui", "tracker.recording",
                   "tracker.records", "tracker.reports"]  # fmt: skip


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_packages_have_a_public_face_that_resolves(package):
    code = (
        f"import importlib, sys; m = importlib.import_module({package!r}); "
        "assert m.__all__, 'empty __all__'; "
        "[getattr(m, n) for n in m.__all__]; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_the_cli_help_loads_no_store_screen_or_event_loop():
    code = (
        "import sys\n"
        "from tracker.cli import cli\n"
        "try:\n"
        "    cli.main(args=['--help'], prog_name='perfsleuth', standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = {m.split(".")[0] for m in done.stderr.split()}
    assert not loaded & {"sqlalchemy", "alembic", "textual", "uvloop", "httpx", "hdrh"}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("tracker", {"sqlalchemy", "textual", "httpx", "click"}),
        ("probes", {"tracker", "sqlalchemy", "textual"}),
        # Analysis is computation over plain records: no database, screen or CLI.
        ("tracker.analysis.compare", {"sqlalchemy", "textual", "click", "httpx"}),
        ("tracker.analysis.changepoints", {"sqlalchemy", "textual", "click", "httpx"}),
        # The agent runs on a server's host: probes and a web server, no database.
        ("tracker.agent.server", {"sqlalchemy", "alembic", "textual", "hdrh"}),
        ("tracker.agent.observe", {"sqlalchemy", "alembic", "textual", "hdrh"}),
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
