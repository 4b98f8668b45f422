"""Engines for SQLite (the embedded default) and PostgreSQL, behind one small Database object.

SQLite is tuned for one process with several tasks: WAL so readers never wait for the writer,
foreign keys on, a busy timeout, and write transactions opened with BEGIN IMMEDIATE, so that two
writers queue on the lock instead of failing when one upgrades a read lock (SQLITE_BUSY).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from orchestra import metrics
from orchestra.errors import InvalidInput
from orchestra.storage import sqlite_driver

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out
# (a restarted server leaves the pool full of dead ones); a busy pool pings nothing.
PING_AFTER_IDLE = 1.0
AUTOCOMMIT_POOL = 6  # connections of the autocommit pool kept open (PostgreSQL)


def async_url(url: str) -> str:
    """Map the URLs users write (sqlite:///PATH, postgresql://...) to async drivers."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername=f"sqlite+{sqlite_driver.DRIVER}"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise InvalidInput(f"unsupported database URL (sqlite:/// or postgresql://): {url}")


def sync_url(url: str) -> str:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.set(drivername="sqlite"))
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class Database:
    """One engine; `transaction()` for writes, `read()` for reads."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.async_url = async_url(url)
        self.is_sqlite = self.async_url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(self.async_url, **kwargs)
        # Reads that need no snapshot, and writes that are one statement, each on its own: on
        # PostgreSQL, no BEGIN and no COMMIT or ROLLBACK around them. The master's hot paths
        # (dispatch passes, trigger groups, reports, polls) use it at once: AUTOCOMMIT_POOL stay
        # open, since a connection opened and closed per use cost a backend's start each time.
        self._autocommit_engine = self.engine
        if not self.is_sqlite:
            _ping_when_idle(self.engine)
            self._autocommit_engine = create_async_engine(
                self.async_url,
                pool_size=AUTOCOMMIT_POOL,
                max_overflow=pool_size,
                isolation_level="AUTOCOMMIT",
            )
            _ping_when_idle(self._autocommit_engine)
        self._writer = self.engine.execution_options(orchestra_write=True)
        self._lock = asyncio.Lock()
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        # SQLite: the connection the write transactions use, one after the other (the lock
        # above), kept checked out (see `transaction`).
        self._kept: AsyncConnection | None = None
        # PostgreSQL: `autocommit` connections kept checked out between uses, with when each
        # was last put back (see `autocommit`).
        self._idle: list[tuple[AsyncConnection, float]] = []
        self._idle_loop: asyncio.AbstractEventLoop | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        started = time.perf_counter()  # its duration: orchestra/metrics.py
        try:
            if not self.is_sqlite:
                async with self._writer.begin() as conn:
                    yield conn
                return
            # SQLite has one writer at a time. Writers of this process queue here, each woken as
            # soon as the previous one ends, instead of in SQLite's busy handler, which sleeps
            # (1, 2, 5, 10... ms) and retries. BEGIN IMMEDIATE and the busy timeout still order
            # this process against others (an admin command on the same file).
            # They take turns on one connection, kept checked out: a checkout, its connection
            # object and the check-in cost SQLAlchemy's asyncio layer 75 us of a 120 us write
            # transaction (the master runs about one per run). After a database error it is given
            # up (it may be broken), and the next transaction opens another; after any other error
            # its transaction was rolled back, and it serves on.
            async with self._write_lock():
                if self._kept is None:
                    self._kept = await self._writer.connect()
                conn = self._kept
                try:
                    async with conn.begin():
                        yield conn
                except BaseException as error:
                    broken = isinstance(error, exc.DBAPIError) or conn.invalidated
                    if broken or conn.in_transaction():
                        self._kept = None
                        await _close_quietly(conn)
                    raise
        finally:
            metrics.TRANSACTION_SECONDS.observe(time.perf_counter() - started)

    def _write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:
            # A new event loop (a new service in tests): the kept connection, tied to the old
            # one, is dropped with its lock.
            self._lock, self._lock_loop, self._kept = asyncio.Lock(), loop, None
        return self._lock

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot."""
        async with self.engine.connect() as conn:
            yield conn

    @property
    def one_writer(self) -> bool:
        """Writes take turns (SQLite: one writer at a time, this process's in `transaction`):
        concurrent write transactions only wait for each other, and need no lock of their own."""
        return self.is_sqlite

    @property
    def one_statement_paths(self) -> bool:
        """The hot operations have one-statement forms in storage (PostgreSQL: a dispatch pass,
        a group of reports, a group of triggers), each atomic on its own on an autocommit
        connection: a round trip where a transaction takes four or five. SQLite's transactions
        cost nothing to begin (in process), so it runs them the general way."""
        return not self.is_sqlite

    @asynccontextmanager
    async def atomic_statements(self) -> AsyncIterator[AsyncConnection]:
        """For writes that are each atomic on their own (one statement apiece): an autocommit
        connection on PostgreSQL; on SQLite, whose writers take turns, the write transaction."""
        if self.is_sqlite:
            async with self.transaction() as conn:
                yield conn
        else:
            async with self.autocommit() as conn:
                yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """Each statement on its own, with no snapshot: it sees what is committed when it runs,
        and on PostgreSQL a write commits at once (no BEGIN, no COMMIT). For the master's polls
        and hints (which a guarded write checks again) and PostgreSQL's one-statement writes.
        SQLite's reads are in-process and cost nothing to begin: there, this is `read()`, and
        writes go through `transaction()` (or `atomic_statements()`).

        On PostgreSQL, up to AUTOCOMMIT_POOL of them stay checked out between uses (a checkout and
        check-in cost SQLAlchemy's asyncio layer more than a short statement's round trip).
        One idle for PING_AFTER_IDLE or more goes back to the pool, which pings it (a
        restarted server leaves them dead); one used by a block that failed is closed (errors
        are rare here, and the connection's state then unknown)."""
        if self.is_sqlite:
            async with self._autocommit_engine.connect() as conn:
                yield conn
            return
        conn = await self._take_idle() or await self._autocommit_engine.connect()
        try:
            yield conn
        except BaseException:
            await _close_quietly(conn)
            raise
        await self._put_back(conn)

    async def _take_idle(self) -> AsyncConnection | None:
        loop = asyncio.get_running_loop()
        if self._idle_loop is not loop:
            self._idle, self._idle_loop = [], loop  # tied to the loop they were opened on
        while self._idle:
            conn, since = self._idle.pop()
            if time.monotonic() - since < PING_AFTER_IDLE:
                return conn
            await conn.close()  # back to the pool, which pings it at checkout
        return None

    async def _put_back(self, conn: AsyncConnection) -> None:
        if len(self._idle) < AUTOCOMMIT_POOL and asyncio.get_running_loop() is self._idle_loop:
            self._idle.append((conn, time.monotonic()))
        else:
            await conn.close()

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        """Every engine this database's connections come from (for event listeners)."""
        return (
            (self.engine,)
            if self._autocommit_engine is self.engine
            else (self.engine, self._autocommit_engine)
        )

    async def dispose(self) -> None:
        kept, self._kept = self._kept, None
        idle, self._idle = [conn for conn, _ in self._idle], []
        for conn in [*([kept] if kept is not None else []), *idle]:
            await _close_quietly(conn)
        await self.engine.dispose()
        if self._autocommit_engine is not self.engine:
            await self._autocommit_engine.dispose()


async def _close_quietly(conn: AsyncConnection) -> None:
    """Give a connection back to its pool (which discards a broken one), whatever happens;
    shielded, so that a cancelled caller still lets it go."""
    with contextlib.suppress(Exception):
        await asyncio.shield(conn.close())


def _ping_when_idle(engine: AsyncEngine) -> None:
    """`pool_pre_ping`, but only for connections that sat idle: under load a pre-ping on every
    checkout was one round trip in five. A connection found dead is replaced, as with
    pre-ping (SQLAlchemy retries the checkout on DisconnectionError)."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["orchestra_idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("orchestra_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"pooled connection is dead: {error}") from error


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # No checkpoint inside a commit (it copies pages and fsyncs): the driver commits on the
        # event loop's thread and checkpoints on the connection's own (storage/sqlite_driver.py).
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("orchestra_write", False)
        # Handed to the driver, which sends it with the transaction's first statement: going
        # through exec_driver_sql cost a whole statement's execution in SQLAlchemy to send none.
        sqlite_driver.begin(conn.connection.dbapi_connection, immediate=immediate)
