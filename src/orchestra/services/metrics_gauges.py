"""The gauges of `GET /metrics` (orchestra/metrics.py), read from the database when scraped, so
that every server of an instance gives the same, whole-instance values: pending runs by
project and the oldest one's age, busy executors, connected workers and their executors.

Four small reads on one snapshot, each served by an index (`ix_run_dispatch` and
`ix_run_status_creation` hold a run's status first) or by the workers' small table; none on
the paths of a run."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from orchestra import metrics
from orchestra.domain.statuses import RunStatus
from orchestra.storage.engine import Database
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import worker as worker_table

_PENDING_BY_PROJECT = (
    sa.select(run_table.c.project, sa.func.count())
    .where(run_table.c.status == RunStatus.PENDING.value)
    .group_by(run_table.c.project)
)
_OLDEST_PENDING = (
    sa.select(run_table.c.creation_date)
    .where(run_table.c.status == RunStatus.PENDING.value)
    .order_by(run_table.c.creation_date)
    .limit(1)
)
_RUNNING = sa.select(sa.func.count()).where(run_table.c.status == RunStatus.RUNNING.value)
_WORKERS = sa.select(
    sa.func.count(),
    sa.func.coalesce(
        sa.func.sum(sa.case((worker_table.c.is_enabled, worker_table.c.executors), else_=0)), 0
    ),
).where(worker_table.c.is_active)


async def refresh(db: Database) -> None:
    """Set the gauges from the database (all of them at once, after the reads)."""
    async with db.read() as conn:
        pending = [(str(p), int(n)) for p, n in (await conn.execute(_PENDING_BY_PROJECT))]
        oldest = await conn.scalar(_OLDEST_PENDING)
        running = int(await conn.scalar(_RUNNING) or 0)
        workers, executors = (await conn.execute(_WORKERS)).one()
    metrics.RUNS_PENDING.clear()  # a project with none pending any more has no series
    for project, count in pending:
        metrics.RUNS_PENDING.labels(project).set(count)
    age = 0.0
    if isinstance(oldest, datetime):
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
    metrics.OLDEST_PENDING.set(age)
    metrics.RUNS_RUNNING.set(running)
    metrics.WORKERS_CONNECTED.set(int(workers or 0))
    metrics.EXECUTORS.set(int(executors or 0))
