"""SQLAlchemy's aiosqlite dialect, with the statements that cannot wait run on the event loop.

aiosqlite runs each sqlite3 call on the connection's own thread: a round trip per call (a
queue, a GIL hand-over, the loop's self-pipe, and the thread's turn on a busy CPU) that cost
100 us and more, when the statement itself takes a few. SQLAlchemy's adapter also makes four
calls per SELECT (open a cursor, execute, fetch all, close) and three per write. Here:

- a statement is one call: cursor, execute, fetch and close together, with the same results,
  errors and rows;
- a transaction's BEGIN goes with its first statement, and a COMMIT or ROLLBACK with nothing
  to end (the pool's rollback after a commit, a transaction that ran no statement) is skipped;
- what cannot wait runs right on the event loop's thread, without the round trip: the
  statements of a read (WAL: readers never wait for the writer), a write transaction's BEGIN
  IMMEDIATE when the write lock is free (tried without waiting), the statements after it (the
  lock is held), and its COMMIT (WAL with synchronous=NORMAL: no fsync; see checkpoints below);
- what may wait stays on the thread: a BEGIN IMMEDIATE while another process holds the lock
  (it waits there, up to the busy timeout), statements outside a transaction, statements
  carrying more than INLINE_BYTES or on the log table (megabytes of output), and the commit
  of a transaction that ran any of those.

Checkpoints: the connections do not checkpoint the WAL on commit (storage/engine.py turns
wal_autocheckpoint off), since that copies pages and fsyncs. Every CHECKPOINT_EVERY commits, and
after a transaction that wrote on the thread, the commit goes to the thread and a PASSIVE
checkpoint follows it there.

Statements on one connection are awaited one at a time, so its thread is idle whenever the loop
uses the connection (sqlite3's check_same_thread is off for that).

Registered as the `sqlite+orchestra_aiosqlite` driver (storage/engine.py uses it).
"""

from __future__ import annotations

import sqlite3
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
_READ_BEGINS = frozenset({"BEGIN", "BEGIN DEFERRED"})
_BEGINS = _READ_BEGINS | {"BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"}
INLINE_BYTES = 64 * 1024
INLINE_ROWS = 64  # an executemany of more rows goes to the thread
CHECKPOINT_EVERY = 200  # commits between two checkpoints, at most


class _Outcome:
    """What one statement left behind."""

    __slots__ = ("description", "lastrowid", "rowcount", "rows")

    def __init__(self, description: Any, rowcount: int, lastrowid: Any, rows: list[Any]) -> None:
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.rows = rows


_NOTHING = _Outcome(None, -1, None, [])


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


def _begin_now(connection: Any, begin: str, busy_timeout: int) -> bool:
    """Try a write transaction's BEGIN without waiting: False if another process holds the
    write lock (then it is sent again from the thread, where waiting blocks nothing)."""
    connection.execute("PRAGMA busy_timeout=0")
    try:
        connection.execute(begin)
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.execute(f"PRAGMA busy_timeout={busy_timeout}")


def _commit_and_checkpoint(connection: Any) -> None:
    """On the thread: commit, then copy the WAL into the database as far as readers allow."""
    connection.commit()
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _busy_timeout(connection: sqlite3.Connection, state: _State) -> int:
    """The connection's busy timeout (ms), read once."""
    if state.busy_timeout is None:
        state.busy_timeout = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
    return state.busy_timeout


def _small(parameters: Any) -> bool:
    if not parameters:
        return True
    values = parameters.values() if isinstance(parameters, dict) else parameters
    size = 0
    for value in values:
        if isinstance(value, str | bytes):
            size += len(value)
        elif isinstance(value, bytearray | memoryview):
            return False
    return size <= INLINE_BYTES


def _light(operation: str, parameters: Any, many: bool) -> bool:
    if "run_log" in operation:
        return False  # log chunks: up to megabytes each way
    if many:
        return len(parameters) <= INLINE_ROWS and all(_small(p) for p in parameters)
    return _small(parameters)


def _reads(operation: str) -> bool:
    return operation.lstrip()[:6].upper() == "SELECT"


class _State:
    """What the driver keeps about a connection's transaction."""

    __slots__ = ("begin", "busy_timeout", "heavy", "writing")

    def __init__(self) -> None:
        self.begin: str | None = None  # a BEGIN to send with the next statement
        self.writing = False  # the transaction is a write (BEGIN IMMEDIATE or EXCLUSIVE)
        self.heavy = False  # some of its statements went to the thread
        self.busy_timeout: int | None = None  # ms, read from the connection once


_commits = 0


class _OneTripCursor:
    """Looks like an aiosqlite cursor to SQLAlchemy's adapter: one call per statement, on the
    loop's thread when it cannot wait (see the module's docstring)."""

    __slots__ = ("_connection", "_outcome", "_state", "arraysize")

    def __init__(self, connection: Any, state: _State) -> None:
        self._connection = connection  # the aiosqlite Connection
        self._state = state
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
            self._state.begin = operation
            self._outcome = _NOTHING
            return
        await self._execute(operation, parameters, False)

    async def executemany(self, operation: str, parameters: Sequence[Any]) -> None:
        await self._execute(operation, parameters, True)

    async def _execute(self, operation: str, parameters: Any, many: bool) -> None:
        state = self._state
        sqlite_connection = self._connection._conn
        begin, state.begin = state.begin, None
        light = _light(operation, parameters, many)
        if begin is not None:
            state.writing = begin not in _READ_BEGINS
            state.heavy = False
            if state.writing:
                if light and _begin_now(sqlite_connection, begin, self._busy_timeout()):
                    begin = None  # the lock is held: the statement cannot wait either
                else:
                    state.heavy = True
                    self._outcome = await self._on_thread(operation, parameters, many, begin)
                    return
            elif not (light and _reads(operation)):
                self._outcome = await self._on_thread(operation, parameters, many, begin)
                return
        elif not sqlite_connection.in_transaction or not light:
            state.heavy = state.heavy or sqlite_connection.in_transaction
            self._outcome = await self._on_thread(operation, parameters, many, None)
            return
        elif not state.writing and not _reads(operation):
            self._outcome = await self._on_thread(operation, parameters, many, None)
            return  # a write in a read transaction would wait for the lock
        self._outcome = _run(sqlite_connection, operation, parameters, many, begin)

    async def _on_thread(
        self, operation: str, parameters: Any, many: bool, begin: str | None
    ) -> _Outcome:
        connection = self._connection
        outcome: _Outcome = await connection._execute(
            _run, connection._conn, operation, parameters, many, begin
        )
        return outcome

    def _busy_timeout(self) -> int:
        return _busy_timeout(self._connection._conn, self._state)

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
        adapted: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        return _OneTripCursor(connection, adapted.orchestra_state)

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor  # nothing to open: no round trip


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("orchestra_state",)
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.orchestra_state = _State()

    def _has_transaction(self) -> bool:
        """Whether there is a transaction to end; a BEGIN not yet sent is dropped (its
        transaction ran no statement)."""
        state = self.orchestra_state
        if state.begin is not None:
            state.begin = None
            return False
        sqlite_connection = self._connection._connection
        return sqlite_connection is not None and bool(sqlite_connection.in_transaction)

    def commit(self) -> None:
        global _commits
        if not self._has_transaction():
            return
        state = self.orchestra_state
        sqlite_connection = self._connection._connection
        try:
            if state.writing:
                _commits += 1
                if state.heavy or _commits % CHECKPOINT_EVERY == 0:
                    await_(self._connection._execute(_commit_and_checkpoint, sqlite_connection))
                    return
            sqlite_connection.commit()
        except Exception as error:
            self._handle_exception(error)

    def rollback(self) -> None:
        if self._has_transaction():
            try:
                self._connection._connection.rollback()  # nothing to wait for
            except Exception as error:
                self._handle_exception(error)


async def holding_write_lock(connection: Any) -> sqlite3.Connection | None:
    """The sqlite3 connection under a connection of this driver in a write transaction, its
    BEGIN IMMEDIATE sent (from the thread, where it may wait, if the lock is not free now):
    its statements may then run on the event loop's thread, nothing can make them wait (see
    storage/direct.py). None outside a write transaction."""
    if not isinstance(connection, OneTripConnection):
        return None
    state = connection.orchestra_state
    aiosqlite_connection = connection._connection
    sqlite_connection: sqlite3.Connection = aiosqlite_connection._conn
    if state.begin is not None:
        if state.begin in _READ_BEGINS:
            return None
        begin, state.begin = state.begin, None
        state.writing, state.heavy = True, False
        if not _begin_now(sqlite_connection, begin, _busy_timeout(sqlite_connection, state)):
            state.heavy = True  # committed from the thread too
            await aiosqlite_connection._execute(sqlite_connection.execute, begin)
        return sqlite_connection
    if state.writing and sqlite_connection.in_transaction:
        return sqlite_connection
    return None


def begin(connection: Any, *, immediate: bool) -> None:
    """Open a transaction on a connection of this driver: its BEGIN (IMMEDIATE for a write)
    goes with the first statement, as when SQLAlchemy executes a BEGIN."""
    state: _State = connection.orchestra_state
    state.begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"


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
