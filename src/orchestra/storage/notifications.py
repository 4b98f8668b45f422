"""Notifications' tables: the notifications, their deliveries (claimed with a lease, in order
per notification) and the relay's place in the change log. Functions take a connection and never
commit."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.storage import event_log as change_log
from orchestra.storage.schema import event_log
from orchestra.storage.schema import notification as notification_table
from orchestra.storage.schema import notification_delivery as delivery_table
from orchestra.storage.schema import notification_relay as relay_table

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
RELAY = "relay"
SCHEDULE_SKIPPED = "schedule.skipped"  # the change log's row for a skipped firing


def new_message() -> str:
    """A delivery's webhook-id: the same for every attempt of it."""
    return f"msg_{uuid.uuid4().hex}"


async def notifications_of(conn: AsyncConnection, projects: Sequence[str]) -> list[dict[str, Any]]:
    """The enabled notifications of these projects, oldest identifier first."""
    if not projects:
        return []
    query = (
        sa.select(notification_table)
        .where(
            notification_table.c.project.in_(sorted(set(projects))),
            notification_table.c.is_enabled.is_(True),
        )
        .order_by(notification_table.c.project, notification_table.c.identifier)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def any_enabled(conn: AsyncConnection) -> bool:
    query = sa.select(notification_table.c.identifier).where(
        notification_table.c.is_enabled.is_(True)
    )
    return (await conn.execute(query.limit(1))).first() is not None


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert deliveries in order (their identifiers order each notification's events); one
    whose (project, notification, event) exists already is left out."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        statement: Any = postgresql.insert(delivery_table).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(delivery_table).on_conflict_do_nothing()
    # One statement per row, in order: an executemany may not keep the identifiers in order
    # on every driver, and a notification's order is its deliveries' identifiers.
    for row in rows:
        await conn.execute(statement, dict(row))


async def lock_relay(conn: AsyncConnection, first_position: int) -> dict[str, Any] | None:
    """The relay's row, locked for this transaction (None: another master holds it, on
    PostgreSQL); created at `first_position` if missing."""
    query = sa.select(relay_table).where(relay_table.c.name == RELAY)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = (await conn.execute(query)).mappings().first()
    if row is not None:
        return dict(row)
    if conn.dialect.name == "postgresql":
        exists = await conn.scalar(sa.select(sa.func.count()).select_from(relay_table))
        if exists:
            return None  # there, and locked by another master
        insert: Any = postgresql.insert(relay_table).on_conflict_do_nothing()
    else:
        insert = sqlite.insert(relay_table).on_conflict_do_nothing()
    values = {
        "name": RELAY,
        "position": first_position,
        "seen": [],
        "gap_date": None,
        "update_date": sa.func.now(),
    }
    await conn.execute(insert.values(values))
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else dict(row)


async def save_relay(
    conn: AsyncConnection,
    position: int,
    seen: Sequence[int],
    gap_date: datetime | None,
    now: datetime,
) -> None:
    await conn.execute(
        relay_table.update()
        .where(relay_table.c.name == RELAY)
        .values(position=position, seen=list(seen), gap_date=gap_date, update_date=now)
    )


async def relay_position(conn: AsyncConnection) -> int | None:
    """Every change log row up to this one is relayed (None: no relay yet)."""
    return await conn.scalar(sa.select(relay_table.c.position).where(relay_table.c.name == RELAY))


async def log_rows(
    conn: AsyncConnection, after: int, through: int | None, limit: int
) -> list[dict[str, Any]]:
    """Change log rows after `after` (up to `through`, when given), in order."""
    query = sa.select(event_log).where(event_log.c.identifier > after)
    if through is not None:
        query = query.where(event_log.c.identifier <= through)
    query = query.order_by(event_log.c.identifier).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def log_rows_in(conn: AsyncConnection, identifiers: Sequence[int]) -> list[dict[str, Any]]:
    """The change log rows of these identifiers that exist (now), in order."""
    if not identifiers:
        return []
    query = (
        sa.select(event_log)
        .where(event_log.c.identifier.in_(list(identifiers)))
        .order_by(event_log.c.identifier)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def max_log_identifier(conn: AsyncConnection) -> int:
    return int(await conn.scalar(sa.select(sa.func.max(event_log.c.identifier))) or 0)


async def log_skipped(conn: AsyncConnection, firings: Sequence[Mapping[str, Any]]) -> None:
    """Log a schedule.skipped change for each of these firing rows that was skipped (the
    notifications relay reads it), in the caller's transaction; nothing when none was."""
    changes = [
        change_log.Change(SCHEDULE_SKIPPED, f["project"], f["schedule"], "skipped")
        for f in firings
        if f["outcome"] == "skipped"
    ]
    if changes:
        await change_log.append(conn, changes)


# The sender's side ------------------------------------------------------------------------------


def _due_query(now: datetime, limit: int) -> Any:
    earlier = delivery_table.alias("earlier")
    blocked = (
        sa.select(earlier.c.identifier)
        .where(
            earlier.c.project == delivery_table.c.project,
            earlier.c.notification == delivery_table.c.notification,
            earlier.c.status == PENDING,
            earlier.c.identifier < delivery_table.c.identifier,
        )
        .exists()
    )
    return (
        sa.select(delivery_table)
        .where(
            delivery_table.c.status == PENDING,
            delivery_table.c.next_attempt_date <= now,
            sa.or_(delivery_table.c.lease_date.is_(None), delivery_table.c.lease_date < now),
            ~blocked,
        )
        .order_by(delivery_table.c.next_attempt_date, delivery_table.c.identifier)
        .limit(limit)
    )


async def any_due(conn: AsyncConnection, now: datetime) -> bool:
    query = sa.select(delivery_table.c.identifier).where(
        delivery_table.c.status == PENDING, delivery_table.c.next_attempt_date <= now
    )
    return (await conn.execute(query.limit(1))).first() is not None


async def claim_due(
    conn: AsyncConnection, holder: str, now: datetime, lease: float, limit: int
) -> list[dict[str, Any]]:
    """Claim up to `limit` due deliveries, each the oldest pending one of its notification,
    for `lease` seconds: one another sender holds (its lease not over) is left alone."""
    rows = [dict(r) for r in (await conn.execute(_due_query(now, limit))).mappings()]
    claimed: list[dict[str, Any]] = []
    until = now + timedelta(seconds=lease)
    for row in rows:
        result = await conn.execute(
            delivery_table.update()
            .where(
                delivery_table.c.identifier == row["identifier"],
                delivery_table.c.status == PENDING,
                sa.or_(delivery_table.c.lease_date.is_(None), delivery_table.c.lease_date < now),
            )
            .values(lease_holder=holder, lease_date=until)
        )
        if result.rowcount == 1:  # else another sender got there first
            claimed.append(row)
    return claimed


async def record_attempt(
    conn: AsyncConnection, identifier: int, holder: str, values: Mapping[str, Any]
) -> bool:
    """Write an attempt's outcome, if this sender still holds the delivery."""
    result = await conn.execute(
        delivery_table.update()
        .where(
            delivery_table.c.identifier == identifier,
            delivery_table.c.lease_holder == holder,
        )
        .values({**values, "lease_holder": None, "lease_date": None})
    )
    return bool(result.rowcount)


async def next_due_date(conn: AsyncConnection) -> datetime | None:
    found: datetime | None = await conn.scalar(
        sa.select(sa.func.min(delivery_table.c.next_attempt_date)).where(
            delivery_table.c.status == PENDING
        )
    )
    return found


async def delete_finished_before(conn: AsyncConnection, before: datetime) -> int:
    result = await conn.execute(
        delivery_table.delete().where(
            delivery_table.c.status != PENDING, delivery_table.c.update_date < before
        )
    )
    return int(result.rowcount or 0)
