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
from orchestra.domain.pages import Listing
from orchestra.storage import direct, event_log, records
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
    change = event_log.Change(
        event_log.PIPELINE_RUN_CREATED, values["project"], values["identifier"], values["status"]
    )
    await event_log.append(conn, [change], now)


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
    if (await conn.execute(query)).rowcount != 1:
        return False
    await event_log.append_for_pipeline_runs(conn, event_log.PIPELINE_RUN_UPDATED, [pipeline_run])
    return True


# A node given its state (node -> status and run) by name, executed once per node (one
# executemany); guarded or not (`_START_NODE`: only a node still pending with no run).
_SET_NODE = (
    sa.update(node_table)
    .where(
        node_table.c.pipeline_run == sa.bindparam("b_pipeline_run"),
        node_table.c.node == sa.bindparam("b_node"),
    )
    .values(
        status=sa.bindparam("b_status"),
        run=sa.bindparam("b_run"),
        update_date=sa.bindparam("b_date", type_=node_table.c.update_date.type),
    )
)
_START_NODE = _SET_NODE.where(node_table.c.status == "pending", node_table.c.run.is_(None))


# PostgreSQL: the same for many nodes in one statement (a statement per node, even pipelined,
# is a round of the server's work each), saying which it moved.
_SET_NODES_PG = """
UPDATE pipeline_node AS n SET status = v.status, run = v.run, update_date = :date
FROM unnest(CAST(:nodes AS VARCHAR[]), CAST(:statuses AS VARCHAR[]), CAST(:runs AS VARCHAR[]))
    AS v(node, status, run)
WHERE n.pipeline_run = :pipeline_run AND n.node = v.node"""
_SYNC_NODES_PG = sa.text(_SET_NODES_PG)
_START_NODES_PG = sa.text(
    _SET_NODES_PG + " AND n.status = 'pending' AND n.run IS NULL RETURNING n.node"
)


async def _set_nodes(
    conn: AsyncConnection, pipeline_run: str, states: Mapping[str, tuple[str, str]], start: bool
) -> set[str] | None:
    """Give nodes their states (node -> (status, run)), guarded when `start`: on PostgreSQL,
    one statement, and the nodes it moved when `start`; on SQLite one executemany (None)."""
    if conn.dialect.name == "postgresql":
        parameters = {
            "date": utcnow(),
            "pipeline_run": pipeline_run,
            "nodes": list(states),
            "statuses": [s for s, _ in states.values()],
            "runs": [r for _, r in states.values()],
        }
        if not start:
            await conn.execute(_SYNC_NODES_PG, parameters)
            return None
        return {str(n) for n in (await conn.execute(_START_NODES_PG, parameters)).scalars()}
    statement = _START_NODE if start else _SET_NODE
    await direct.execute(conn, statement, _node_states(pipeline_run, states))
    return None


def _node_states(pipeline_run: str, states: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {"b_pipeline_run": pipeline_run, "b_node": n, "b_status": s, "b_run": r, "b_date": now}
        for n, (s, r) in states.items()
    ]


async def sync_nodes(
    conn: AsyncConnection, pipeline_run: str, states: Mapping[str, tuple[str, str]]
) -> None:
    """Bring job nodes to their latest runs' state (node -> (status, run)), all at once. The
    caller updates the pipeline run after (`update`, which logs the change)."""
    if not states:
        return
    await _set_nodes(conn, pipeline_run, states, start=False)


async def start_nodes(
    conn: AsyncConnection, pipeline_run: str, runs: Mapping[str, str]
) -> set[str]:
    """Give each node in `runs` (node -> run identifier) its run, moving it from `pending`
    with no run to `pending` with that run, all at once (each update guarded on the node's
    state). The nodes that got their run here (not those another transaction moved first).
    The caller updates the pipeline run after (`update`, which logs the change)."""
    if not runs:
        return set()
    states = {name: ("pending", run) for name, run in runs.items()}
    won = await _set_nodes(conn, pipeline_run, states, start=True)
    if won is None:  # SQLite: which nodes have this transaction's runs
        mine = sa.select(node_table.c.node).where(
            node_table.c.pipeline_run == pipeline_run, node_table.c.run.in_(list(runs.values()))
        )
        won = {str(n) for n in (await conn.execute(mine)).scalars()}
    return won


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
    if (await conn.execute(query)).rowcount != 1:
        return False
    await event_log.append_for_pipeline_runs(conn, event_log.PIPELINE_RUN_UPDATED, [identifier])
    return True


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
) -> Listing[Row]:
    """Pipeline runs newest first, filtered by equality on project, pipeline or status."""
    found = await records.page_newest(conn, pipeline_run_table, filters, cursor, limit)
    return found.map(dict)
