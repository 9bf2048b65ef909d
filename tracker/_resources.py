"""Locate files that ship beside the code: the example server and the Alembic migrations.

In a wheel they live under `tracker/_bundled/` (hatch force-include); in a source
checkout or an editable install they are read from the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE_DIR / "_bundled"
_REPO = _PACKAGE_DIR.parent


def _find(bundled: Path, in_repo: Path) -> Path:
    if bundled.exists():
        return bundled
    if in_repo.exists():
        return in_repo
    raise FileNotFoundError(
        f"perfsleuth is installed without {bundled.name}; reinstall it with `pip install .`"
    )


def example_server_path() -> Path:
    """Path of `llm_server.py`, the simulated LLM server used by `perfsleuth demo`."""
    return _find(_BUNDLED / "llm_server.py", _REPO / "examples" / "llm_server.py")


def migrations_path() -> Path:
    """Directory holding Alembic's env.py and versions/."""
    return _find(_BUNDLED / "migrations", _REPO / "migrations")
