"""storage/sqlite_driver.py sends a transaction's BEGIN with its first statement and skips a
COMMIT or ROLLBACK with nothing to end. Whatever it skips, a transaction must still commit or
roll back whole, and must never leave SQLite's write lock held: another process (here a plain
sqlite3 connection that does not wait for the lock) must be able to write right after."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from orchestra.storage import sqlite_driver
from orchestra.storage.engine import Database
from tests.support.databases import SqliteTemplate

NOTES = sa.table("note", sa.column("text"))


@pytest.fixture
async def database(sqlite_template: SqliteTemplate, tmp_path: Path) -> Database:
    url = sqlite_template.copy(tmp_path)
    db = Database(url)
    async with db.transaction() as conn:
        await conn.execute(sa.text("CREATE TABLE note (text TEXT PRIMARY KEY)"))
    yield db  # type: ignore[misc]
    await db.dispose()


def other_process_writes(db: Database, text: str) -> None:
    """Write as another process would, failing at once if the write lock is held."""
    path = sa.engine.make_url(db.url).database
    assert path is not None
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO note (text) VALUES (?)", (text,))
        connection.execute("COMMIT")
    finally:
        connection.close()


async def texts(db: Database) -> list[str]:
    async with db.read() as conn:
        return sorted((await conn.execute(sa.select(NOTES.c.text))).scalars())


async def test_a_write_commits_and_releases_the_lock(database: Database) -> None:
    async with database.transaction() as conn:
        await conn.execute(NOTES.insert().values(text="a"))
        await conn.execute(NOTES.insert().values(text="b"))
    other_process_writes(database, "c")
    assert await texts(database) == ["a", "b", "c"]


async def test_a_failed_transaction_rolls_back_whole(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.transaction() as conn:
            await conn.execute(NOTES.insert().values(text="a"))
            await conn.execute(NOTES.insert().values(text="a"))  # the key is taken
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            await conn.execute(NOTES.insert().values(text="b"))
            raise RuntimeError("the caller's own failure")
    other_process_writes(database, "c")
    assert await texts(database) == ["c"]


async def test_a_transaction_without_statements_holds_nothing(database: Database) -> None:
    async with database.transaction():
        pass
    async with database.read():
        pass
    other_process_writes(database, "a")
    async with database.transaction() as conn:
        await conn.execute(NOTES.insert().values(text="b"))
    assert await texts(database) == ["a", "b"]


async def test_a_read_sees_one_snapshot_and_ends_it(database: Database) -> None:
    other_process_writes(database, "a")
    async with database.read() as conn:
        first = list((await conn.execute(sa.select(NOTES.c.text))).scalars())
        other_process_writes(database, "b")  # WAL: a writer does not wait for readers
        again = list((await conn.execute(sa.select(NOTES.c.text))).scalars())
    assert first == again == ["a"]
    assert await texts(database) == ["a", "b"]


async def test_a_write_waiting_for_another_process_leaves_the_loop_free(
    database: Database,
) -> None:
    path = sa.engine.make_url(database.url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        waiting = asyncio.create_task(_write(database, "mine"))
        # For half a second (a window, not a wait for state), the loop keeps serving reads
        # while the write waits for the lock: it never stalls (the busy timeout is 30 s).
        last = time.monotonic()
        end, stall = last + 0.5, 0.0
        while last < end:
            assert await texts(database) == []
            await asyncio.sleep(0)  # let the write's task run
            now = time.monotonic()
            stall, last = max(stall, now - last), now
        assert stall < 0.4
        assert not waiting.done()
        other.execute("INSERT INTO note (text) VALUES ('theirs')")
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(waiting, 30)
    assert await texts(database) == ["mine", "theirs"]


async def _write(db: Database, text: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(NOTES.insert().values(text=text))


async def test_the_wal_is_checkpointed_into_the_database(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits do not checkpoint (wal_autocheckpoint is off); the driver does, every
    # CHECKPOINT_EVERY commits, on the connection's thread. Without it the database file
    # would never grow: every page would stay in the WAL.
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY", 10)
    path = Path(sa.engine.make_url(database.url).database or "")
    before = path.stat().st_size
    for number in range(40):
        await _write(database, f"{number:04d}" + "x" * 4000)
    assert path.stat().st_size > before + 100_000
    assert len(await texts(database)) == 40


class Refused(Exception):
    pass


async def test_write_transactions_take_turns_on_one_kept_connection(database: Database) -> None:
    """The kept connection serves each write transaction in turn: one that failed for a reason
    of its own was rolled back and the connection serves on; one that the database failed
    gives it up for a new one. Each commits or rolls back whole, and leaves the lock free."""
    async with database.transaction() as first:
        await first.execute(NOTES.insert().values(text="a"))
    async with database.transaction() as second:
        await second.execute(NOTES.insert().values(text="b"))
    assert second is first

    with pytest.raises(Refused):
        async with database.transaction() as conn:
            await conn.execute(NOTES.insert().values(text="c"))
            raise Refused()
    other_process_writes(database, "d")
    async with database.transaction() as conn:
        assert conn is first
        await conn.execute(NOTES.insert().values(text="e"))

    with pytest.raises(IntegrityError):
        async with database.transaction() as conn:
            await conn.execute(NOTES.insert().values(text="f"))
            await conn.execute(NOTES.insert().values(text="a"))  # taken
    other_process_writes(database, "g")
    async with database.transaction() as conn:
        assert conn is not first  # the failed one was given up
        await conn.execute(NOTES.insert().values(text="h"))
    assert await texts(database) == ["a", "b", "d", "e", "g", "h"]
