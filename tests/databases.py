"""Real test databases: a migrated SQLite file copied per test, and PostgreSQL databases cloned
from a migrated template. Names carry the xdist worker id and the process id, so parallel workers
never collide, nor two test sessions sharing one server; what a dead session left is dropped."""

from __future__ import annotations

import itertools
import os
import re
import shutil
from pathlib import Path

import psycopg
import sqlalchemy as sa
from psycopg import sql

from orchestra.storage.migrate import upgrade

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def worker_id() -> str:
    """The xdist worker ("gw0", "gw1"...) or "main" when tests run in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def postgres_url() -> str:
    return os.environ.get("ORCHESTRA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database, in the `postgresql://` form users write."""
    parsed = sa.engine.make_url(url).set(drivername="postgresql", database=name)
    return parsed.render_as_string(hide_password=False)


class SqliteTemplate:
    """One migrated SQLite file per session; each test gets a copy."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.sqlite"
        upgrade(f"sqlite:///{self.path}")

    def copy(self, directory: Path) -> str:
        target = directory / "orchestra.sqlite"
        shutil.copy(self.path, target)
        return f"sqlite:///{target}"


class PostgresDatabases:
    """Creates and drops databases on the test server for one xdist worker."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url or postgres_url()
        tag = f"{worker_id()}_{os.getpid()}"
        self.prefix = f"orchestra_t_{tag}_"
        self.template = f"orchestra_tpl_{tag}"
        self._numbers = itertools.count(1)
        self._template_ready = False
        self.drop_leftovers()

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(
            with_database(self.base_url, _database(self.base_url)), autocommit=True
        )

    def drop_leftovers(self) -> None:
        """Drop what earlier sessions left behind: databases named after a dead process."""
        with self._admin() as conn:
            names = [
                row[0]
                for row in conn.execute(
                    r"SELECT datname FROM pg_database"
                    r" WHERE datname LIKE 'orchestra\_t\_%' OR datname LIKE 'orchestra\_tpl\_%'"
                )
            ]
            for name in names:
                found = _PID.search(name)
                if found and not _alive(int(found.group(1))):
                    _drop(conn, name)

    def create(self, *, migrated: bool = True) -> str:
        """A new database: a copy of the migrated template, or empty."""
        if migrated:
            self._ensure_template()
        name = f"{self.prefix}{next(self._numbers)}"
        with self._admin() as conn:
            if migrated:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(self.template)
                    )
                )
            else:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.base_url, name)

    def drop(self, url: str) -> None:
        with self._admin() as conn:
            _drop(conn, _database(url))

    def close(self) -> None:
        with self._admin() as conn:
            _drop(conn, self.template)

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        with self._admin() as conn:
            _drop(conn, self.template)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        upgrade(with_database(self.base_url, self.template))
        self._template_ready = True


_PID = re.compile(r"^orchestra_(?:t|tpl)_[^_]+_(\d+)(?:_\d+)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _database(url: str) -> str:
    name = sa.engine.make_url(url).database
    assert name, f"no database in {url}"
    return name


def _drop(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
