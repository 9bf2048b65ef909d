"""A throwaway PostgreSQL cluster on loopback for the store's tests.

Used by the `postgres_server` / `postgres_url` fixtures in tests/conftest.py (and so by
tests/functional/test_store_postgres.py, test_store_concurrency.py, test_migrations.py).
The cluster lives in a temp dir, listens only on 127.0.0.1 on a free port (its Unix
socket also in the temp dir, so it never meets a system cluster), trusts loopback
connections, and is stopped and removed when the session ends.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The superuser initdb creates; tests connect as it (trust auth, loopback only).
SUPERUSER = "perfsleuth"

#: Why the PostgreSQL tests skip when the driver is missing (also used by tests that only
#: need the driver, not a server).
PSYCOPG_MISSING = (
    "psycopg (the PostgreSQL driver) is not installed: pip install 'psycopg[binary]>=3.1'"
)

#: Set to 1 in CI to turn "no PostgreSQL here" into a failure instead of a skip, so a
#: broken apt-get cannot quietly drop the PostgreSQL tests.
REQUIRE_ENV = "PERFSLEUTH_REQUIRE_POSTGRES"

# The server's own system user when we are root (postgres refuses to run as root); the
# Debian/Ubuntu package creates it.
_SYSTEM_USER = "postgres"

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class PostgresUnavailable(Exception):
    """No PostgreSQL server can run here; the message says why and what to install."""


@dataclass
class PostgresServer:
    """A running throwaway cluster: its address, and fresh databases on demand."""

    port: int
    base_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    _counter: Iterator[int] = field(default_factory=itertools.count)

    def url(self, dbname: str = "postgres") -> str:
        """The SQLAlchemy URL of database `dbname` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, prefix: str = "perfsleuth_test") -> str:
        """CREATE DATABASE a fresh, empty database and return its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        # CREATE DATABASE cannot run inside a transaction block.
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _dsn(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"


def find_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres`: `pg_config --bindir`, else the
    newest /usr/lib/postgresql/*/bin (Debian puts the server binaries off $PATH)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
        reverse=True,
    )
    candidates.extend(Path(p) for p in versions)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


def _run_as() -> dict[str, Any]:
    """Popen arguments that run the server as a user postgres accepts.

    Popen's `user`/`group` switch identity in the child right before exec, which is what
    `runuser -u postgres --` does, minus a process in between (so the pid we signal is
    the postmaster itself).
    """
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no {_SYSTEM_USER!r} system user to run the "
            "PostgreSQL server as (postgres refuses root): apt-get install postgresql"
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _owner_ids(run_as: dict[str, Any]) -> tuple[int, int]:
    return run_as.get("user", os.geteuid()), run_as.get("group", os.getegid())


def check_available() -> tuple[Path, dict[str, Any]]:
    """The server binaries and how to run them, or PostgresUnavailable saying why not."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable(PSYCOPG_MISSING) from None
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (no initdb from `pg_config --bindir` or in "
            "/usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    return bindir, _run_as()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _initdb(bindir: Path, data: Path, base: Path, run_as: dict[str, Any]) -> None:
    done = subprocess.run(
        [
            str(bindir / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            # A throwaway cluster: skipping the fsyncs saves a second or more on slow disks.
            "--no-sync",
        ],
        # The server's user may not be allowed into our working directory.
        cwd=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **run_as,
    )
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _start_postmaster(
    bindir: Path, data: Path, base: Path, run_as: dict[str, Any]
) -> PostgresServer:
    port = _free_port()
    log_path = base / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={base}",
                # Durability is worthless for a cluster deleted at the end of the session,
                # and fsyncs are most of what a test database would wait for.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=100",
            ],
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in pytest must not reach the postmaster before the
            # fixture's finalizer stops it in order.
            start_new_session=True,
            **run_as,
        )
    server = PostgresServer(port=port, base_dir=base, proc=proc, log_path=log_path)
    _wait_ready(server)
    return server


class _PortTaken(Exception):
    pass


def _wait_ready(server: PostgresServer) -> None:
    import psycopg

    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            log = server.log()
            if "could not bind" in log or "address already in use" in log.lower():
                raise _PortTaken(log)
            raise RuntimeError(
                f"the PostgreSQL server exited with {server.proc.returncode}:\n{log}"
            )
        try:
            with psycopg.connect(server._dsn("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            time.sleep(0.05)
    _stop(server)
    raise TimeoutError(f"PostgreSQL not accepting connections after {_START_TIMEOUT_S}s")


def _stop(server: PostgresServer) -> None:
    proc = server.proc
    if proc.poll() is None:
        # SIGINT is postgres's "fast" shutdown: roll back sessions, exit at once.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # The postmaster's children are in its session; take them all down.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=_STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb + start a cluster on a free loopback port; stop it and delete it on exit.

    Raises PostgresUnavailable when this machine cannot run one (no binaries, no
    psycopg, root without a `postgres` user). A cluster that has what it needs but fails
    to start raises RuntimeError with the server's log: that is a bug to look at, not a
    reason to skip.
    """
    bindir, run_as = check_available()
    base = Path(tempfile.mkdtemp(prefix="perfsleuth-pg-"))
    try:
        # The server's user must own its data dir (initdb checks) and write the socket.
        os.chown(base, *_owner_ids(run_as))
        base.chmod(0o700)
        data = base / "data"
        _initdb(bindir, data, base, run_as)
        server: PostgresServer | None = None
        for attempt in range(3):
            try:
                server = _start_postmaster(bindir, data, base, run_as)
                break
            except _PortTaken:
                # Someone bound the port between our probe and the postmaster's bind.
                if attempt == 2:
                    raise
        assert server is not None
        try:
            yield server
        finally:
            _stop(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)
