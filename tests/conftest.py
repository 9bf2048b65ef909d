import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test helper modules (support/, functional/cli_helpers.py) import by plain name.
_TESTS = Path(__file__).resolve().parent
for extra in (_TESTS, _TESTS / "functional"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from support.postgres import (  # noqa: E402
    REQUIRE_ENV,
    PostgresServer,
    PostgresUnavailable,
    check_available,
    running_postgres,
)
from support.processes import spawn  # noqa: E402, F401  (a fixture shared by probe tests)

# -- PostgreSQL: one throwaway cluster per session, a fresh database per test ----------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on 127.0.0.1 for the whole session (skips, saying why, when
    this machine cannot run one; fails instead when $PERFSLEUTH_REQUIRE_POSTGRES=1)."""
    try:
        check_available()
    except PostgresUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {exc}")
        pytest.skip(str(exc))
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's cluster: postgresql+psycopg://...;
    the cluster (and so every database) is deleted at the end of the session."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind perfsleuth supports, one test per kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'perfsleuth.db'}"
    return str(request.getfixturevalue("postgres_url"))
