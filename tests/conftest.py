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

from support.machine_share import machine_held  # noqa: E402
from support.postgres import (  # noqa: E402
    REQUIRE_ENV,
    PostgresServer,
    PostgresUnavailable,
    check_available,
    running_postgres,
)
from support.processes import spawn  # noqa: E402, F401  (a fixture shared by probe tests)

# -- parallel workers: `alone` tests have the machine to themselves --------------------


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Under pytest-xdist, hold the machine shared, or exclusively for a test marked
    `alone` (support/machine_share.py); without workers there is nothing to share. Outside
    pytest-timeout's wrapper, so that waiting for the machine is not the test's time."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # The workers' base temp dirs are siblings under the run's own (pytest's fixture
    # `tmp_path_factory` is this object).
    run_dir = item.config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]
    alone = item.get_closest_marker("alone") is not None
    with machine_held(run_dir / "machine-share", alone=alone):
        yield


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
