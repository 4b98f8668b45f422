"""SQLAlchemy's aiosqlite dialect with one thread round trip per statement.

aiosqlite runs each sqlite3 call on the connection's own thread; SQLAlchemy's adapter makes
four of them per SELECT (open a cursor, execute, fetch all, close) and three per write. Each
round trip hands the GIL to that thread and back and wakes the event loop through its self-pipe:
under load that, not SQLite, was most of a statement's cost. Here a statement is one call on the
thread (cursor, execute, fetch, close together), with the same results, errors and rows.

Registered as the `sqlite+orchestra_aiosqlite` driver (storage/engine.py uses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util.concurrency import await_

DRIVER = "orchestra_aiosqlite"


class _Outcome:
    """What one statement left behind, read on the connection's thread."""

    __slots__ = ("description", "lastrowid", "rowcount", "rows")

    def __init__(self, description: Any, rowcount: int, lastrowid: Any, rows: list[Any]) -> None:
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.rows = rows


def _run(connection: Any, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: the whole statement, cursor to close."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return _Outcome(cursor.description, cursor.rowcount, cursor.lastrowid, rows)
    finally:
        cursor.close()


class _OneTripCursor:
    """Looks like an aiosqlite cursor to SQLAlchemy's adapter; only execute goes to the thread."""

    __slots__ = ("_connection", "_outcome", "arraysize")

    def __init__(self, connection: Any) -> None:
        self._connection = connection  # the aiosqlite Connection
        self._outcome: _Outcome | None = None
        self.arraysize = 1

    @property
    def description(self) -> Any:
        return None if self._outcome is None else self._outcome.description

    @property
    def rowcount(self) -> int:
        return -1 if self._outcome is None else self._outcome.rowcount

    @property
    def lastrowid(self) -> Any:
        return None if self._outcome is None else self._outcome.lastrowid

    async def execute(self, operation: str, parameters: Any = None) -> None:
        self._outcome = await self._connection._execute(
            _run, self._connection._conn, operation, parameters, False
        )

    async def executemany(self, operation: str, parameters: Sequence[Any]) -> None:
        self._outcome = await self._connection._execute(
            _run, self._connection._conn, operation, parameters, True
        )

    async def fetchall(self) -> list[Any]:
        if self._outcome is None:
            return []
        rows, self._outcome.rows = self._outcome.rows, []
        return rows

    def close(self) -> None:
        self._outcome = None


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return _OneTripCursor(connection)

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor  # nothing to open: no round trip


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True
        return OneTripConnection(self, await_(connection))


class Dialect(SQLiteDialect_aiosqlite):
    driver = DRIVER
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> AsyncAdapt_aiosqlite_dbapi:
        return OneTripDBAPI(__import__("aiosqlite"), __import__("sqlite3"))


registry.register(f"sqlite.{DRIVER}", __name__, "Dialect")
