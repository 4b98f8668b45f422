"""Fixtures of the system tests: a fresh database of each engine per test, and a Cluster of real
processes on it whose logs are shown when the test fails.

Bootstrapping (migrating, and creating the administrator and the workers' user with the real
`orchestra admin` commands) takes seconds, so it is done once per engine and xdist worker into a
template: each test gets a fresh copy of it (a copied SQLite file, or a PostgreSQL database
created from the template), which it alone uses and which is dropped afterwards.

PostgreSQL database names carry the xdist worker and the pid of its process, so that several
pytest sessions on one machine never share (or drop) each other's databases; those of sessions
whose process is gone are dropped when a session starts.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.system.harness import Cluster, Credentials, bootstrap

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/"
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
PREFIX = "orchestra_sys_"
SESSION = f"{PREFIX}{XDIST_WORKER}_{os.getpid()}_"
_numbers = itertools.count(1)


def _admin_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(POSTGRES_SERVER + "postgres", autocommit=True)


def _drop(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(frozen=True)
class Template:
    """A bootstrapped database to copy from."""

    location: str  # a SQLite file path, or a PostgreSQL database name
    credentials: Credentials


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    directory = tmp_path_factory.mktemp("system-sqlite-template")
    path = directory / "template.sqlite"
    return Template(str(path), bootstrap(f"sqlite:///{path}", directory))


def _drop_leftovers(conn: psycopg.Connection[Any]) -> None:
    """Drop the databases of earlier sessions whose process no longer runs."""
    pattern = PREFIX.replace("_", r"\_") + "%"
    query = "SELECT datname FROM pg_database WHERE datname LIKE %s"
    for (name,) in conn.execute(query, (pattern,)).fetchall():
        parts = name[len(PREFIX) :].split("_")
        if len(parts) >= 3 and parts[1].isdigit() and not _alive(int(parts[1])):
            _drop(conn, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    name = f"{SESSION}tpl"
    with _admin_connection() as conn:
        _drop_leftovers(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    directory = tmp_path_factory.mktemp("system-postgres-template")
    yield Template(name, bootstrap(POSTGRES_SERVER + name, directory))
    with _admin_connection() as conn:
        _drop(conn, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def database_from(template: Template, engine: str, tmp_path: Path, name: str) -> Iterator[str]:
    """The URL of a fresh copy of `template`: a file copy for SQLite, `CREATE DATABASE ...
    TEMPLATE` for PostgreSQL (dropped afterwards)."""
    if engine == "sqlite":
        target = tmp_path / "orchestra.sqlite"
        shutil.copyfile(template.location, target)
        yield f"sqlite:///{target}"
        return
    with _admin_connection() as conn:
        _drop(conn, name)
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template.location)
            )
        )
    try:
        yield POSTGRES_SERVER + name
    finally:
        with _admin_connection() as conn:
            _drop(conn, name)


@pytest.fixture
def system_database(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Credentials]]:
    """A fresh database for one test (and the credentials it holds)."""
    template: Template = request.getfixturevalue(
        "sqlite_template" if engine == "sqlite" else "postgres_template"
    )
    with database_from(template, engine, tmp_path, f"{SESSION}{next(_numbers)}") as url:
        yield url, template.credentials


@pytest.fixture
def cluster(system_database: tuple[str, Credentials], tmp_path: Path) -> Iterator[Cluster]:
    """The processes of this test; nothing is started yet (tests call `cluster.start(...)`)."""
    url, credentials = system_database
    built = Cluster(tmp_path, url, credentials)
    try:
        yield built
    finally:
        built.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tails of the process logs to the report of a failed (or xfailed) test."""
    report = yield
    if report.failed or hasattr(report, "wasxfail"):
        built = getattr(item, "funcargs", {}).get("cluster")
        if isinstance(built, Cluster):
            report.sections.append(("orchestra processes", built.log_tails()))
    return report
