"""The webhook deliveries that started a run (table `webhook_delivery`): claimed by their unique
key in the transaction that creates the run, so that one delivery starts one run at most,
whatever the number of API servers it reaches at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.storage import direct
from orchestra.storage.schema import webhook_delivery as table

# project, kind (job or pipeline), target, delivery
Key = tuple[str, str, str, str]
KEY_COLUMNS = ("project", "kind", "target", "delivery")
_CLAIM_SQLITE = (
    sqlite.insert(table)
    .on_conflict_do_nothing(index_elements=list(KEY_COLUMNS))
    .returning(*(table.c[k] for k in KEY_COLUMNS))
)


def key_of(row: Mapping[str, Any]) -> Key:
    return (row["project"], row["kind"], row["target"], row["delivery"])


async def claim(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> set[Key]:
    """Insert these deliveries, in key order, skipping those already there; the keys inserted.
    On PostgreSQL a key another transaction inserted and has not committed yet waits for it:
    skipped if it commits, inserted here if it rolls back."""
    if not rows:
        return set()
    ordered = sorted(rows, key=key_of)
    if conn.dialect.name != "postgresql":
        # SQLite: one statement per delivery on its own connection (storage/direct.py), in
        # the write transaction; a few microseconds each.
        claimed: set[Key] = set()
        for row in ordered:
            for won in await direct.rows(conn, _CLAIM_SQLITE, row):
                claimed.add(key_of(won))
        return claimed
    statement = (
        postgresql.insert(table)
        .values([dict(r) for r in ordered])
        .on_conflict_do_nothing(index_elements=list(KEY_COLUMNS))
        .returning(*(table.c[k] for k in KEY_COLUMNS))
    )
    result = await conn.execute(statement)
    return {(r[0], r[1], r[2], r[3]) for r in result.all()}


async def runs_of(conn: AsyncConnection, keys: Sequence[Key]) -> dict[Key, str | None]:
    """The run each of these (claimed) deliveries started."""
    if not keys:
        return {}
    columns = [table.c[k] for k in KEY_COLUMNS]
    query = sa.select(*columns, table.c.run).where(
        sa.tuple_(*columns).in_([tuple(k) for k in keys])
    )
    return {(r[0], r[1], r[2], r[3]): r[4] for r in (await conn.execute(query)).all()}


async def set_run(conn: AsyncConnection, key: Key, run: str) -> None:
    """Name the run a delivery claimed before it was created (a pipeline run)."""
    where = [table.c[k] == v for k, v in zip(KEY_COLUMNS, key, strict=True)]
    await conn.execute(table.update().where(*where).values(run=run))


async def prune(conn: AsyncConnection, before: datetime) -> int:
    """Forget the deliveries claimed before `before`; how many."""
    result = await conn.execute(table.delete().where(table.c.creation_date < before))
    return int(result.rowcount or 0)
