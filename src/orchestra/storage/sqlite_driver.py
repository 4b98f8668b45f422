"""SQLAlchemy's aiosqlite dialect, with statements that cannot wait run on the event loop.

aiosqlite runs each sqlite3 call on the connection's own thread: a round trip per call (a
queue, a GIL hand-over, the loop's self-pipe) that cost 100 us and more under load, when the
statement itself takes a few. SQLAlchemy's adapter also makes four calls per SELECT (open a
cursor, execute, fetch all, close) and three per write. Here:

- a statement is one call: cursor, execute, fetch and close together, with the same results,
  errors and rows;
- a transaction's BEGIN goes with its first statement, and a COMMIT or ROLLBACK with nothing
  to end (the pool's rollback after a commit, a transaction that ran no statement) is skipped;
- statements that cannot wait for a lock and carry little data run right on the event loop's
  thread, without the round trip: those of a read (WAL: readers never wait) and those after
  the first of a write transaction (its BEGIN IMMEDIATE holds the write lock by then). What may
  wait stays on the thread: a write transaction's first statement (its BEGIN IMMEDIATE waits
  while another process writes), its COMMIT (a WAL checkpoint may run then), anything outside
  a transaction, statements carrying more than INLINE_BYTES, and those on the log table
  (megabytes of output, written or read).

Statements on one connection are awaited one at a time, so its thread is idle whenever the loop
uses the connection (sqlite3's check_same_thread is off for that).

Registered as the `sqlite+orchestra_aiosqlite` driver (storage/engine.py uses it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
_READ_BEGINS = frozenset({"BEGIN", "BEGIN DEFERRED"})
_BEGINS = _READ_BEGINS | {"BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"}
INLINE_BYTES = 64 * 1024
INLINE_ROWS = 64  # an executemany of more rows goes to the thread


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
    """The transaction's BEGIN if still to be sent, then the whole statement, cursor to close
    (on the connection's thread, or on the loop's when it cannot wait)."""
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


def _small(parameters: Any) -> bool:
    if not parameters:
        return True
    values = parameters.values() if isinstance(parameters, Mapping) else parameters
    size = 0
    for value in values:
        if isinstance(value, str | bytes | bytearray | memoryview):
            size += len(value)
    return size <= INLINE_BYTES


def _light(operation: str, parameters: Any, many: bool) -> bool:
    if "run_log" in operation:
        return False  # log chunks: up to megabytes each way
    if many:
        return len(parameters) <= INLINE_ROWS and all(_small(p) for p in parameters)
    return _small(parameters)


def _reads(operation: str) -> bool:
    return operation.lstrip()[:6].upper() == "SELECT"


def _cannot_wait(connection: Any, begin: str | None, operation: str) -> bool:
    """Whether this statement is sure not to wait for a lock: a SELECT in a read transaction
    (WAL), or any statement of a write transaction after its first (which took the lock)."""
    if begin is not None:
        return begin in _READ_BEGINS and _reads(operation)
    if not connection._conn.in_transaction:
        return False  # outside a transaction: it may take the lock itself
    if getattr(connection, "orchestra_writing", False):
        return True
    return _reads(operation)  # a write in a read transaction would wait for the lock


class _OneTripCursor:
    """Looks like an aiosqlite cursor to SQLAlchemy's adapter: one call per statement, on the
    loop's thread when it cannot wait (see the module's docstring)."""

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
        if begin is not None:
            connection.orchestra_writing = begin not in _READ_BEGINS
        sqlite_connection = connection._conn
        if _cannot_wait(connection, begin, operation) and _light(operation, parameters, many):
            self._outcome = _run(sqlite_connection, operation, parameters, many, begin)
            return
        self._outcome = await connection._execute(
            _run, sqlite_connection, operation, parameters, many, begin
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
        """Whether there is a transaction to end; a BEGIN not yet sent is dropped (its
        transaction ran no statement)."""
        connection = self._connection
        if getattr(connection, "orchestra_begin", None) is not None:
            connection.orchestra_begin = None
            return False
        sqlite_connection = connection._connection
        return sqlite_connection is not None and bool(sqlite_connection.in_transaction)

    def commit(self) -> None:
        if self._has_transaction():
            super().commit()  # on the thread: a WAL checkpoint may run with it

    def rollback(self) -> None:
        if self._has_transaction():
            try:
                self._connection._connection.rollback()  # nothing to wait for
            except Exception as error:
                self._handle_exception(error)


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        # The loop's thread runs some statements too, never while the connection's does.
        kw["check_same_thread"] = False
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
