"""Pipeline runs and their nodes: the queries (in the caller's transaction, never committing).

A node starts, is skipped or waits only from `pending` with no run (a guarded update whose
row count says who won), so a node is started once even by two masters at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import utcnow
from orchestra.domain.models import Row
from orchestra.storage import records
from orchestra.storage.schema import pipeline_node as node_table
from orchestra.storage.schema import pipeline_run as pipeline_run_table
from orchestra.storage.schema import run as run_table

NOT_STARTED = ("pending", "waiting")


async def insert(conn: AsyncConnection, values: Mapping[str, Any], nodes: Sequence[str]) -> None:
    now = utcnow()
    await conn.execute(
        pipeline_run_table.insert(), {"creation_date": now, "update_date": now, **values}
    )
    rows = [
        {
            "pipeline_run": values["identifier"],
            "node": node,
            "status": "pending",
            "creation_date": now,
            "update_date": now,
        }
        for node in nodes
    ]
    if rows:
        await conn.execute(node_table.insert(), rows)


async def get(
    conn: AsyncConnection, identifier: str, project: str | None = None, *, lock: bool = False
) -> Row | None:
    """The pipeline run's row; `lock`: locked until the transaction ends (PostgreSQL; SQLite
    has one writer)."""
    query = sa.select(pipeline_run_table).where(pipeline_run_table.c.identifier == identifier)
    if project is not None:
        query = query.where(pipeline_run_table.c.project == project)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def nodes_of(conn: AsyncConnection, identifiers: Sequence[str]) -> dict[str, list[Row]]:
    result: dict[str, list[Row]] = {i: [] for i in identifiers}
    if not identifiers:
        return result
    query = sa.select(node_table).where(node_table.c.pipeline_run.in_(list(identifiers)))
    for row in (await conn.execute(query)).mappings():
        result[row["pipeline_run"]].append(row)
    return result


async def latest_runs(conn: AsyncConnection, identifier: str) -> dict[str, Row]:
    """Each node's latest run (its last attempt, when retried): node -> row with identifier,
    status, attempt and results."""
    query = sa.select(
        run_table.c.identifier,
        run_table.c.pipeline_node,
        run_table.c.status,
        run_table.c.attempt,
        run_table.c.results,
    ).where(run_table.c.pipeline_run == identifier)
    latest: dict[str, Row] = {}
    for row in (await conn.execute(query)).mappings():
        node = row["pipeline_node"]
        if node is not None and (node not in latest or row["attempt"] > latest[node]["attempt"]):
            latest[node] = row
    return latest


async def set_node(
    conn: AsyncConnection,
    pipeline_run: str,
    node: str,
    values: Mapping[str, Any],
    *,
    only_from: Iterable[str] | None = None,
    unstarted: bool = False,
) -> bool:
    """Update a node; `only_from` guards on its status, `unstarted` on its having no run.
    True if it was updated."""
    query = (
        sa.update(node_table)
        .where(node_table.c.pipeline_run == pipeline_run, node_table.c.node == node)
        .values(update_date=utcnow(), **values)
    )
    if only_from is not None:
        query = query.where(node_table.c.status.in_(list(only_from)))
    if unstarted:
        query = query.where(node_table.c.run.is_(None))
    return (await conn.execute(query)).rowcount == 1


async def update(
    conn: AsyncConnection,
    identifier: str,
    values: Mapping[str, Any],
    *,
    only_status: str | None = None,
) -> bool:
    query = (
        sa.update(pipeline_run_table)
        .where(pipeline_run_table.c.identifier == identifier)
        .values(update_date=utcnow(), **values)
    )
    if only_status is not None:
        query = query.where(pipeline_run_table.c.status == only_status)
    return (await conn.execute(query)).rowcount == 1


async def mark_for_runs(conn: AsyncConnection, runs: Sequence[str], now: datetime) -> int:
    """Mark for advancing the pipeline runs these runs belong to (runs that just ended):
    one statement, nothing when none belongs to a pipeline."""
    if not runs:
        return 0
    owners = (
        sa.select(run_table.c.pipeline_run)
        .where(run_table.c.identifier.in_(list(runs)), run_table.c.pipeline_run.is_not(None))
        .scalar_subquery()
    )
    query = (
        sa.update(pipeline_run_table)
        .where(pipeline_run_table.c.identifier.in_(owners))
        .values(advance_date=now)
    )
    return (await conn.execute(query)).rowcount or 0


async def marked(
    conn: AsyncConnection, before: datetime, limit: int, *, lock: bool = True
) -> list[str]:
    """Pipeline runs marked for advancing at or before `before`; `lock`: locked as read,
    skipping those another master holds (PostgreSQL; SQLite's dialect leaves the clause out)."""
    query = (
        sa.select(pipeline_run_table.c.identifier)
        .where(
            pipeline_run_table.c.advance_date.is_not(None),
            pipeline_run_table.c.advance_date <= before,
        )
        .order_by(pipeline_run_table.c.advance_date)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).scalars())


async def active_runs(conn: AsyncConnection, identifier: str) -> list[Row]:
    """The pending and running runs of a pipeline run."""
    query = sa.select(run_table.c.identifier, run_table.c.status).where(
        run_table.c.pipeline_run == identifier,
        run_table.c.status.in_(("pending", "running")),
    )
    return list((await conn.execute(query)).mappings())


async def page(
    conn: AsyncConnection, filters: Mapping[str, Any], cursor: str | None, limit: int | None
) -> tuple[list[Row], str | None]:
    """Pipeline runs newest first, filtered by equality on project, pipeline or status."""
    rows, next_cursor = await records.page_newest(conn, pipeline_run_table, filters, cursor, limit)
    return list(rows), next_cursor
