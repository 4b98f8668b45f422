"""storage/engine.py keeps connections checked out between uses where SQLAlchemy's checkout and
check-in cost more than the statements (SQLite's write transactions, PostgreSQL's `peek`):
they are reused while sound, and given up after a database error or, on PostgreSQL, after an
idle while (the pool then pings them: a restarted server leaves them dead)."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from orchestra.services.container import Services
from orchestra.storage import engine

ONE = sa.text("SELECT 1")


async def backend_of(conn: sa.ext.asyncio.AsyncConnection) -> int:
    return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def test_peek_connections_are_reused_until_an_error(services: Services) -> None:
    if services.db.is_sqlite:
        pytest.skip("SQLite's peek is a read of the pool (in-process, nothing to save)")
    db = services.db
    async with db.autocommit() as first:
        backend = await backend_of(first)
    async with db.autocommit() as again:
        assert again is first and await backend_of(again) == backend
    async with db.autocommit() as one, db.autocommit() as other:  # at once: two connections
        assert one is not other

    with pytest.raises(sa.exc.ProgrammingError):
        async with db.autocommit() as conn:
            failed = conn
            await conn.execute(sa.text("SELECT * FROM no_such_table"))
    async with db.autocommit() as conn:
        assert conn is not failed
        assert (await conn.execute(ONE)).scalar_one() == 1


async def test_an_idle_peek_connection_killed_meanwhile_is_replaced(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    if services.db.is_sqlite:
        pytest.skip("PostgreSQL's connections only")
    db = services.db
    async with db.autocommit() as conn:
        backend = await backend_of(conn)
    # The server ends it while it sits idle (as a restart would); the next use, after an idle
    # while (none, here), goes to the pool, which pings it and opens another.
    monkeypatch.setattr(engine, "PING_AFTER_IDLE", 0.0)
    url = sa.engine.make_url(db.url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    async with db.autocommit() as conn:
        assert (await conn.execute(ONE)).scalar_one() == 1
        assert await backend_of(conn) != backend
