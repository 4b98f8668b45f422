"""The master's questions about runs under way: which a worker holds, which to abort, which
ended elsewhere, which waited or were away too long; and the small marks it leaves on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row as SqlRow
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.statuses import RunStatus
from orchestra.storage import records
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import run_step as step_table
from orchestra.storage.schema import worker as worker_table

_RUNNING = RunStatus.RUNNING.value


async def held_by(conn: AsyncConnection, worker: str) -> dict[str, dict[str, Any]]:
    """The runs running on `worker`, by identifier."""
    query = sa.select(run_table).where(run_table.c.worker == worker, run_table.c.status == _RUNNING)
    return {r["identifier"]: dict(r) for r in (await conn.execute(query)).mappings()}


async def to_abort(conn: AsyncConnection) -> list[tuple[str, str]]:
    """(worker, run) of the running runs whose abort was requested (few: index on status)."""
    query = sa.select(run_table.c.worker, run_table.c.identifier).where(
        run_table.c.status == _RUNNING, run_table.c.should_abort.is_(True)
    )
    return [(r.worker, r.identifier) for r in await conn.execute(query)]


async def not_running_among(conn: AsyncConnection, runs: Sequence[str]) -> list[str]:
    query = sa.select(run_table.c.identifier).where(
        run_table.c.identifier.in_(list(runs)), run_table.c.status != _RUNNING
    )
    return list((await conn.execute(query)).scalars())


async def expired_pending(
    conn: AsyncConnection, now: datetime, created_before: datetime, limit: int
) -> list[tuple[str, datetime]]:
    """(run, creation date) of pending runs past their expiry date, or created before
    `created_before` when they have none."""
    query = (
        sa.select(run_table.c.identifier, run_table.c.creation_date)
        .where(
            run_table.c.status == RunStatus.PENDING.value,
            sa.or_(
                run_table.c.expiry_date < now,
                sa.and_(
                    run_table.c.expiry_date.is_(None), run_table.c.creation_date < created_before
                ),
            ),
        )
        .limit(limit)
    )
    return [(r.identifier, r.creation_date) for r in await conn.execute(query)]


async def of_silent_workers(conn: AsyncConnection, seen_before: datetime) -> list[SqlRow[Any]]:
    """Running runs whose worker was last seen before `seen_before` (or never): identifier,
    worker, lease, assignment_date and the worker's last_seen_date."""
    query = (
        sa.select(
            run_table.c.identifier,
            run_table.c.worker,
            run_table.c.lease,
            run_table.c.assignment_date,
            worker_table.c.last_seen_date,
        )
        .select_from(run_table)
        .outerjoin(worker_table, worker_table.c.identifier == run_table.c.worker)
        .where(
            run_table.c.status == _RUNNING,
            sa.or_(
                worker_table.c.last_seen_date.is_(None),
                worker_table.c.last_seen_date < seen_before,
            ),
        )
    )
    return list(await conn.execute(query))


async def add_to_step_log(conn: AsyncConnection, run: str, step: int, size: int) -> None:
    await conn.execute(
        step_table.update()
        .where(step_table.c.run == run, step_table.c.index == step)
        .values(log_size=step_table.c.log_size + size)
    )


async def note_late_report(conn: AsyncConnection, run: str, note: str) -> None:
    """What a worker reported after the run had ended without it (kept, refused)."""
    await conn.execute(
        run_table.update().where(run_table.c.identifier == run).values(late_report=note)
    )


async def set_retried_by(conn: AsyncConnection, run: str, retry: str) -> None:
    await records.update(conn, run_table, {"identifier": run}, {"retried_by": retry})


async def update_steps(
    conn: AsyncConnection, rows: Sequence[dict[str, Any]], guard: tuple[str, Sequence[str]]
) -> None:
    """Step rows (run, index and the new columns; all of one shape) changed while `guard`
    holds (a column and the values it may have): one statement for all."""
    await records.update_many(conn, step_table, ("run", "index"), rows, guard)


async def update_runs(conn: AsyncConnection, changes: Sequence[dict[str, Any]]) -> None:
    """Run rows (identifier and the new columns; all of one shape): one statement for all."""
    await records.update_many(conn, run_table, ("identifier",), changes)
