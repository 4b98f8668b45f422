"""storage/direct.py: statements executed on SQLite's connection below SQLAlchemy write and read
exactly what SQLAlchemy's execution would, raise SQLAlchemy's errors, and are SQLAlchemy's own
execution wherever they cannot go direct (PostgreSQL, outside a write transaction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from orchestra.services.container import Services
from orchestra.storage import direct
from orchestra.storage.schema import user as user_table
from orchestra.storage.schema import worker as worker_table

WORKERS = sa.select(worker_table).where(
    worker_table.c.identifier.in_(sa.bindparam("workers", expanding=True))
)
INSERT_WORKER = worker_table.insert()
STORED = sa.text("SELECT * FROM worker WHERE identifier = :identifier")


def worker(identifier: str) -> dict[str, Any]:
    seen = datetime(2026, 12, 5, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    return {
        "identifier": identifier,
        "owner": "u",
        "version": "1.0",
        "display_name": 'd\'un "worker"',
        "properties": {"os": "linux", "nested": [1, None, "x"]},
        "is_enabled": True,
        "is_active": False,
        "should_disconnect": False,
        "executors": 2,
        "master": None,
        "last_seen_date": seen,
        "creation_date": seen,
        "update_date": seen.astimezone(UTC),
    }


async def add_owner(services: Services) -> None:
    now = datetime.now(UTC)
    async with services.db.transaction() as conn:
        await conn.execute(
            user_table.insert(),
            {
                "identifier": "u",
                "display_name": "U",
                "roles": ["worker"],
                "is_enabled": True,
                "creation_date": now,
                "update_date": now,
            },
        )


async def test_rows_written_and_read_directly_are_sqlalchemys(services: Services) -> None:
    await add_owner(services)
    seen: list[str] = []
    with direct.observing(seen.append):
        async with services.db.transaction() as conn:
            await conn.execute(INSERT_WORKER, [worker("by-sqlalchemy")])
            await direct.execute(conn, INSERT_WORKER, [worker("direct"), worker("direct-2")])
    # SQLite's statements went direct (SQLAlchemy's events do not see them); PostgreSQL's not.
    assert bool(seen) == services.db.is_sqlite

    async with services.db.read() as conn:
        stored = {
            name: dict((await conn.execute(STORED, {"identifier": name})).mappings().one())
            for name in ("by-sqlalchemy", "direct")
        }
    assert {**stored["direct"], "identifier": "by-sqlalchemy"} == stored["by-sqlalchemy"]

    names = ["by-sqlalchemy", "direct"]
    async with services.db.transaction() as conn:
        read_directly = await direct.rows(conn, WORKERS, {"workers": names})
        read = [dict(r) for r in (await conn.execute(WORKERS, {"workers": names})).mappings()]
    assert sorted(read_directly, key=str) == sorted(read, key=str)
    row = next(r for r in read_directly if r["identifier"] == "direct")
    assert row["properties"] == {"os": "linux", "nested": [1, None, "x"]}
    assert row["is_enabled"] is True and row["is_active"] is False
    assert row["last_seen_date"] == worker("x")["last_seen_date"]
    assert row["last_seen_date"].tzinfo == UTC
    assert row["master"] is None


async def test_an_empty_list_and_a_missing_row_read_nothing(services: Services) -> None:
    async with services.db.transaction() as conn:
        assert await direct.rows(conn, WORKERS, {"workers": []}) == []
        assert await direct.rows(conn, WORKERS, {"workers": ["nobody"]}) == []


async def test_a_direct_statements_error_is_sqlalchemys_and_rolls_back(services: Services) -> None:
    await add_owner(services)
    with pytest.raises(sa.exc.IntegrityError):
        async with services.db.transaction() as conn:
            await direct.execute(conn, INSERT_WORKER, [worker("w")])
            await direct.execute(conn, INSERT_WORKER, [worker("w")])  # the same key
    async with services.db.transaction() as conn:
        assert await direct.rows(conn, WORKERS, {"workers": ["w"]}) == []  # nothing kept


async def test_outside_a_write_transaction_sqlalchemy_executes(services: Services) -> None:
    await add_owner(services)
    async with services.db.transaction() as conn:
        await direct.execute(conn, INSERT_WORKER, [worker("w")])
    seen: list[str] = []
    with direct.observing(seen.append):
        async with services.db.read() as conn:
            (row,) = await direct.rows(conn, WORKERS, {"workers": ["w"]})
    assert seen == [] and row["identifier"] == "w" and row["properties"]["os"] == "linux"
