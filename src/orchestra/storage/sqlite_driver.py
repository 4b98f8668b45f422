"""SQLAlchemy's aiosqlite dialect with one thread round trip per statement.

aiosqlite runs each sqlite3 call on the connection's own thread; SQLAlchemy's adapter makes
four of them per SELECT (open a cursor, execute, fetch all, close) and three per write. Each
round trip hands the GIL to that thread and back and wakes the event loop through its self-pipe:
under load that, not SQLite, was most of a statement's cost. Here a statement is one call on the
thread (cursor, execute, fetch, close together), with the same results, errors and rows.

A transaction's BEGIN goes to the thread with its first statement, and a COMMIT or ROLLBACK
with nothing to end (the pool's rollback after a commit, a transaction that ran no statement)
does not go at all: a write transaction of one statement is two round trips instead of four.

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
_BEGINS = frozenset({"BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED", "BEGIN EXCLUSIVE"})


class _Outcome:
    """What one statement left behind, read on the connection's thread."""

    __slots__ = ("description", "lastrowid", "rowcount", "rows")

    def __init__(self, description: Any, rowcount: int, lastrowid: Any, rows: list[Any]) -> None:
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.rows = rows


def _run(
    connection: Any, operation: str, parameters: Any, many: bool, begin: str | None
) -> _Outcome:
    """On the connection's thread: the transaction's BEGIN if still to be sent, then the whole
    statement, cursor to close."""
    if begin is not None:
        connection.execute(begin)
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
        if not parameters and operation in _BEGINS:
            # Sent with the next statement (OneTripConnection ends it if none comes).
            self._connection.orchestra_begin = operation
            self._outcome = _Outcome(None, -1, None, [])
            return
        await self._execute(operation, parameters, False)

    async def executemany(self, operation: str, parameters: Sequence[Any]) -> None:
        await self._execute(operation, parameters, True)

    async def _execute(self, operation: str, parameters: Any, many: bool) -> None:
        connection = self._connection
        begin = getattr(connection, "orchestra_begin", None)
        connection.orchestra_begin = None
        self._outcome = await connection._execute(
            _run, connection._conn, operation, parameters, many, begin
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

    def _has_transaction(self) -> bool:
        """Whether there is a transaction to end on the thread; a BEGIN not yet sent is
        dropped (its transaction ran no statement)."""
        connection = self._connection
        if getattr(connection, "orchestra_begin", None) is not None:
            connection.orchestra_begin = None
            return False
        sqlite_connection = connection._connection
        # in_transaction is a flag read without touching the database: the thread is idle,
        # since statements on a connection are awaited one at a time.
        return sqlite_connection is not None and bool(sqlite_connection.in_transaction)

    def commit(self) -> None:
        if self._has_transaction():
            super().commit()

    def rollback(self) -> None:
        if self._has_transaction():
            super().rollback()


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
