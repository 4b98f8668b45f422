"""Run retention: final runs are deleted, with their steps and logs, once they ended longer ago
than their job's `retention.days` (or the instance's `run_retention_days` when the job sets
none), or when the job has `retention.runs` newer final runs. Pending and running runs are
never deleted, and nothing is deleted unless a job or the instance asks for it.

A sweep looks for runs to delete outside any transaction (a final run stays final, so what it
found is still to delete) and deletes them in small transactions (BATCH runs each), so that it
holds SQLite's one writer only to delete, and never for long; two masters sweeping at once
delete each run once (a run deleted by the other is simply not found).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from orchestra.clock import Clock
from orchestra.domain.controls import retention_from_row
from orchestra.domain.statuses import FINAL_RUN_STATUSES
from orchestra.services.artifacts import ArtifactService
from orchestra.storage.engine import Database
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import run as run_table

log = logging.getLogger(__name__)

BATCH = 500
_FINAL = sorted(s.value for s in FINAL_RUN_STATUSES)


class RetentionService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        default_days: float | None = None,
        artifacts: ArtifactService | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.default_days = default_days
        # The deleted runs' stored files go right after them; what a crash between the two
        # left (or a run deleted some other way) goes at the end of each sweep.
        self.artifacts = artifacts

    async def sweep(self) -> int:
        """One pass over every job (and the runs of jobs since deleted); the number of runs
        deleted."""
        now = self.clock.now()
        async with self.db.read() as conn:
            jobs = (
                await conn.execute(
                    sa.select(job_table.c.project, job_table.c.identifier, job_table.c.retention)
                )
            ).all()
        deleted = 0
        for project, job, raw in jobs:
            retention = retention_from_row(raw)
            of_job = _final_runs().where(run_table.c.project == project, run_table.c.job == job)
            days = retention.days if retention and retention.days else self.default_days
            if days is not None:
                cutoff = now - timedelta(days=days)
                deleted += await self._delete_all(
                    of_job.where(*_ended_before(cutoff)).order_by(run_table.c.creation_date)
                )
            if retention and retention.runs:
                newest_first = (run_table.c.creation_date.desc(), run_table.c.identifier.desc())
                deleted += await self._delete_all(
                    of_job.order_by(*newest_first).offset(retention.runs)
                )
        if self.default_days is not None:
            cutoff = now - timedelta(days=self.default_days)
            their_job = sa.select(job_table.c.identifier).where(
                job_table.c.project == run_table.c.project,
                job_table.c.identifier == run_table.c.job,
            )
            deleted += await self._delete_all(
                _final_runs()
                .where(*_ended_before(cutoff), ~sa.exists(their_job))
                .order_by(run_table.c.creation_date)
            )
        if deleted:
            log.info("retention: deleted %d runs", deleted)
        if self.artifacts is not None:
            await self.artifacts.sweep_orphans()
        return deleted

    async def _delete_all(self, query: Any) -> int:
        """Delete the runs `query` selects, BATCH at a time; the number deleted here."""
        total = 0
        while True:
            async with self.db.autocommit() as conn:
                found = (await conn.execute(query.limit(BATCH))).scalars().all()
            if not found:
                return total
            async with self.db.transaction() as conn:
                result = await conn.execute(
                    sa.delete(run_table).where(
                        run_table.c.identifier.in_(found), run_table.c.status.in_(_FINAL)
                    )
                )
            total += int(result.rowcount)
            if self.artifacts is not None:
                await self.artifacts.runs_deleted(list(found))
            if len(found) < BATCH:
                return total
            await asyncio.sleep(0)  # let the other writers in between batches


def _final_runs() -> Any:
    return sa.select(run_table.c.identifier).where(run_table.c.status.in_(_FINAL))


def _ended_before(cutoff: datetime) -> tuple[Any, ...]:
    """Runs that ended before `cutoff` (a run that waited or ran long is kept its full time
    after it ended); the creation date, never later than the end, lets the index narrow it."""
    ended = sa.func.coalesce(run_table.c.completion_date, run_table.c.creation_date)
    return (run_table.c.creation_date < cutoff, ended < cutoff)
