"""Real databases for tests and benchmarks: SQLite files copied from a prepared template, and
PostgreSQL databases created from a prepared template database (or empty). A template is
prepared once (migrated, or bootstrapped with the users a cluster needs); every test gets a copy
of its own, dropped afterwards.

PostgreSQL names are `orchestra_<use>_<xdist worker>_<pid>_<n>`, so that parallel workers never
collide, nor two sessions sharing one server; whatever a session whose process is gone left
behind is dropped when another starts.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from orchestra.storage.migrate import upgrade
from tests.support.accounts import Credentials, bootstrap
from tests.support.procfs import process_gone

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
ENGINES = ("sqlite", "postgresql")
# What a name this module gave a database looks like; group 1 is the pid of its session.
SESSION_DATABASE = re.compile(r"^orchestra_[a-z]+_[A-Za-z0-9]+_(\d+)(?:_\w+)?$")
Prepare = Callable[[str], None]  # makes a template of the empty database at this URL


def worker_id() -> str:
    """The xdist worker ("gw0", "gw1"...) or "main" when tests run in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def postgres_url() -> str:
    """The test server, naming the database to connect to while creating and dropping others."""
    return os.environ.get("ORCHESTRA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database, in the `postgresql://` form users write."""
    parsed = sa.engine.make_url(url).set(drivername="postgresql", database=name)
    return parsed.render_as_string(hide_password=False)


def database_name(url: str) -> str:
    name = sa.engine.make_url(url).database
    assert name, f"no database in {url}"
    return name


def admin_connection(base_url: str | None = None) -> psycopg.Connection[Any]:
    """An autocommit connection to the server's base database (the test server's by
    default)."""
    url = base_url or postgres_url()
    return psycopg.connect(
        with_database(url, database_name(url)), autocommit=True, connect_timeout=5
    )


class SqliteTemplate:
    """One prepared (by default migrated) SQLite file; each test gets a copy."""

    def __init__(self, directory: Path, prepare: Prepare = upgrade) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "template.sqlite"
        prepare(f"sqlite:///{self.path}")

    def copy(self, directory: Path) -> str:
        """The URL of a copy at DIRECTORY/orchestra.sqlite."""
        target = directory / "orchestra.sqlite"
        shutil.copy(self.path, target)
        return f"sqlite:///{target}"


class PostgresDatabases:
    """Creates and drops databases on a PostgreSQL server for this process: copies of a
    template prepared at the first copy (by default migrated), or empty ones. `use` names what
    they are for (a word), as a part of their names."""

    def __init__(
        self, base_url: str | None = None, use: str = "t", prepare: Prepare = upgrade
    ) -> None:
        self.base_url = base_url or postgres_url()
        self.prefix = f"orchestra_{use}_{worker_id()}_{os.getpid()}_"
        self.template = f"{self.prefix}tpl"
        self.prepare = prepare
        self._numbers = itertools.count(1)
        self._template_ready = False
        self.drop_leftovers()

    def admin(self) -> psycopg.Connection[Any]:
        return admin_connection(self.base_url)

    def drop_leftovers(self) -> None:
        """Drop what earlier sessions left behind: databases named after a dead process."""
        with self.admin() as conn:
            query = r"SELECT datname FROM pg_database WHERE datname LIKE 'orchestra\_%'"
            for (name,) in conn.execute(query).fetchall():
                found = SESSION_DATABASE.match(name)
                if found and process_gone(int(found.group(1))):
                    _drop(conn, name)

    def create(self, *, migrated: bool = True) -> str:
        """The URL of a new database: a copy of the prepared template, or empty."""
        if migrated:
            self._ensure_template()
        name = f"{self.prefix}{next(self._numbers)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if migrated:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(self.template))
        with self.admin() as conn:
            conn.execute(statement)
        return with_database(self.base_url, name)

    def drop(self, url: str) -> None:
        with self.admin() as conn:
            _drop(conn, database_name(url))

    def close(self) -> None:
        with self.admin() as conn:
            _drop(conn, self.template)

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        with self.admin() as conn:
            _drop(conn, self.template)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        self.prepare(with_database(self.base_url, self.template))
        self._template_ready = True


class ClusterDatabases:
    """Databases a cluster can run on, of either engine, holding the administrator and the
    workers' user: each engine's template is bootstrapped once (under `directory`), and each
    database is a copy of it."""

    def __init__(self, directory: Path, use: str = "sys", base_url: str | None = None) -> None:
        self.directory = directory
        self.use = use
        self.base_url = base_url
        self.credentials: dict[str, Credentials] = {}
        self._sqlite: SqliteTemplate | None = None
        self._postgres: PostgresDatabases | None = None

    def _bootstrap(self, engine: str) -> Prepare:
        def prepare(url: str) -> None:
            data_dir = self.directory / engine
            data_dir.mkdir(parents=True, exist_ok=True)
            self.credentials[engine] = bootstrap(url, data_dir)

        return prepare

    @contextmanager
    def database(self, engine: str, directory: Path) -> Iterator[tuple[str, Credentials]]:
        """(URL, credentials) of a fresh copy for one user (a SQLite file in `directory`); a
        PostgreSQL copy is dropped afterwards."""
        if engine == "sqlite":
            if self._sqlite is None:
                self._sqlite = SqliteTemplate(self.directory / engine, self._bootstrap(engine))
            yield self._sqlite.copy(directory), self.credentials[engine]
            return
        if engine != "postgresql":
            raise ValueError(f"unknown engine {engine!r}")
        if self._postgres is None:
            self._postgres = PostgresDatabases(self.base_url, self.use, self._bootstrap(engine))
        url = self._postgres.create()
        try:
            yield url, self.credentials[engine]
        finally:
            self._postgres.drop(url)

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()


def _drop(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
