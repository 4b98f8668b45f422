"""storage/sqlite_driver.py sends a transaction's BEGIN with its first statement and skips a
COMMIT or ROLLBACK with nothing to end. Whatever it skips, a transaction must still commit or
roll back whole, and must never leave SQLite's write lock held: another process (here a plain
sqlite3 connection that does not wait for the lock) must be able to write right after."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from orchestra.storage.engine import Database
from tests.databases import SqliteTemplate

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
