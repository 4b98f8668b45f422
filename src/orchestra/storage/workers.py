"""Worker rows as the master changes them: registration, liveness, going away.

Statements are built once (records' cached shapes) and take values as parameters: a storm of
registrations spent most of its time building and coercing a statement per worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.storage import event_log, records
from orchestra.storage.schema import worker as worker_table

_INSERT = worker_table.insert()
_EXCEPTIONS = sa.select(
    worker_table.c.identifier,
    sa.and_(worker_table.c.is_enabled, worker_table.c.is_approved).label("takes_runs"),
    worker_table.c.should_disconnect,
).where(
    sa.or_(
        worker_table.c.is_enabled.is_(False),
        worker_table.c.is_approved.is_(False),
        worker_table.c.should_disconnect.is_(True),
    )
)


async def lock(conn: AsyncConnection, identifier: str) -> Mapping[str, Any] | None:
    """A worker's row, locked until the transaction ends (PostgreSQL), or None."""
    return await records.fetch_one(conn, worker_table, {"identifier": identifier}, for_update=True)


async def insert(conn: AsyncConnection, identifier: str, values: Mapping[str, Any]) -> None:
    """A new worker's row; a concurrent insert of the same identifier fails on the key."""
    await conn.execute(_INSERT, {**values, "identifier": identifier})
    await changed(conn, [identifier])


async def changed(conn: AsyncConnection, identifiers: Iterable[str]) -> None:
    """Log a change of these workers (storage/event_log.py)."""
    await event_log.append(
        conn, [event_log.Change(event_log.WORKER_UPDATED, None, i) for i in identifiers]
    )


async def update(
    conn: AsyncConnection,
    identifier: str,
    values: Mapping[str, Any],
    where: sa.ColumnElement[bool] | None = None,
) -> None:
    await records.update(conn, worker_table, {"identifier": identifier}, values, where=where)
    await changed(conn, [identifier])


async def disconnected(conn: AsyncConnection, identifier: str, master: str, now: datetime) -> None:
    """A worker gone from `master` (unless it connected to another meanwhile)."""
    await update(
        conn,
        identifier,
        {"is_active": False, "master": None, "last_seen_date": now},
        where=worker_table.c.master == master,
    )


async def vouch(
    conn: AsyncConnection, identifiers: Iterable[str], master: str, now: datetime
) -> None:
    """These workers are connected to `master` now (their liveness lease)."""
    await conn.execute(
        worker_table.update()
        .where(worker_table.c.identifier.in_(list(identifiers)))
        .values(last_seen_date=now, is_active=True, master=master)
    )


async def disabled_or_leaving(conn: AsyncConnection) -> dict[str, tuple[bool, bool]]:
    """(takes runs: enabled and approved, should_disconnect) of the workers disabled, not
    approved or asked to disconnect: the exceptions only (every other worker is enabled,
    approved and staying)."""
    return {
        r.identifier: (bool(r.takes_runs), bool(r.should_disconnect))
        for r in await conn.execute(_EXCEPTIONS)
    }


async def mark_away(conn: AsyncConnection, seen_before: datetime, present: Iterable[str]) -> None:
    """Workers no master has vouched for since `seen_before` are connected nowhere (their
    master died), except those `present`."""
    here = list(present)
    away = await conn.execute(
        worker_table.update()
        .where(worker_table.c.is_active.is_(True), worker_table.c.last_seen_date < seen_before)
        .where(worker_table.c.identifier.not_in(here) if here else sa.true())
        .values(is_active=False, master=None)
        .returning(worker_table.c.identifier)
    )
    await changed(conn, away.scalars())
