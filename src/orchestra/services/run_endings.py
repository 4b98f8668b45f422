"""How the master ends or puts back a run it cannot leave where it is, inside a caller's
transaction: a run whose assignment never reached its worker goes back to pending; a run whose
worker was lost ends `exception`; a run that ended is retried when its policy says so.

Shared by the worker registry (a worker back without its runs), the leases (a worker away too
long) and the report applier (a run's end).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra import metrics
from orchestra.clock import Clock
from orchestra.domain.controls import retry_from_row
from orchestra.domain.models import Run
from orchestra.domain.statuses import RunStatus, StepStatus
from orchestra.services import pipeline_marks
from orchestra.services.events import Events
from orchestra.services.runs import RunService
from orchestra.storage import running
from orchestra.storage import runs as run_storage

log = logging.getLogger(__name__)


class RunEndings:
    def __init__(self, clock: Clock, events: Events, runs: RunService) -> None:
        self.clock = clock
        self.events = events
        self.runs = runs

    async def requeue(self, conn: AsyncConnection, run_id: str) -> None:
        """A running run back to pending: only when nothing of it ran (it never reached its
        worker), so that handing it out again cannot run it twice."""
        await run_storage.set_run_status(
            conn,
            run_id,
            RunStatus.PENDING,
            {"worker": None, "master": None, "assignment_date": None},
        )

    async def give_up(self, conn: AsyncConnection, run_id: str, reason: str) -> bool:
        """End a pending or running run `exception`, its running steps with it and the rest
        skipped; retried if its policy says so. False if it had ended meanwhile."""
        now = self.clock.now()
        moved = await run_storage.set_run_status(
            conn, run_id, RunStatus.EXCEPTION, {"completion_date": now, "reason": reason}
        )
        if moved:
            await run_storage.end_running_steps(conn, run_id, StepStatus.EXCEPTION, now)
            await run_storage.skip_pending_steps(conn, run_id, StepStatus.SKIPPED)
            log.warning("run %s ended exception: %s", run_id, reason)
            run = await self.after_final(conn, run_id)
            if run is not None:
                metrics.run_ended(run.project, run.job, run.status.value, run.start_date, now)
            if await pipeline_marks.runs_ended(conn, [run_id], now):
                # Published before the caller's commit: the pipelines loop picks it up then.
                pipeline_marks.advance_soon(self.events)
            self.events.publish(f"run:{run_id}")
        return moved

    async def after_final(self, conn: AsyncConnection, run_id: str) -> Run | None:
        """A run just ended: retry it if its policy says so (in the same transaction, so a
        retry is never lost nor made twice: `retry_of` is unique). The run, as it ended."""
        run = await run_storage.get_run(conn, run_id)
        if run is None:
            return None
        retry = retry_from_row(run.retry)
        if retry is not None and retry.applies(run.status.value, run.attempt):
            retried = await self.runs.retry_in(conn, run, retry)
            await running.set_retried_by(conn, run_id, retried.identifier)
            log.info(
                "run %s ended %s: attempt %d is run %s",
                run_id,
                run.status.value,
                retried.attempt,
                retried.identifier,
            )
            self.events.publish("dispatch")
        return run
