"""Schedules that fire pipelines (`pipeline: ID` instead of `job: ID`): each due time triggers a
pipeline run, the overlap policy judged on the last pipeline run's status (`running` is active),
and `last_run` is that pipeline run. The scheduler (services/scheduler.py) hands each due
schedule of a pipeline here, one per transaction, its row locked as read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import utcnow
from orchestra.domain.schedules import plan
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services import change_log
from orchestra.services.parameter_secrets import opened_schedule_values, secret_keys_of
from orchestra.services.pipeline_runs import PipelineRunService
from orchestra.services.runs import RunService
from orchestra.services.schedule_rows import firing_row, state_of
from orchestra.storage import notifications as notification_store
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import pipeline as pipeline_table
from orchestra.storage.schema import pipeline_run as pipeline_run_table
from orchestra.storage.schema import schedule as schedule_table
from orchestra.storage.schema import schedule_firing as firing_table

log = logging.getLogger(__name__)


class AlreadyFired(Exception):
    """This due time of the schedule has a firing already."""


class OneByOne(Protocol):
    db: Database

    async def _handle(self, project: str, identifier: str, now: datetime) -> int: ...


async def after_batch(scheduler: OneByOne, keys: Sequence[tuple[str, str]], now: datetime) -> int:
    """Handle, one per transaction, those of these due schedules that fire a pipeline (a
    batch of the scheduler's leaves them); the pipeline runs triggered."""
    if not keys:
        return 0
    query = sa.select(schedule_table.c.project, schedule_table.c.identifier).where(
        schedule_table.c.pipeline.is_not(None),
        sa.tuple_(schedule_table.c.project, schedule_table.c.identifier).in_(list(keys)),
    )
    async with scheduler.db.read() as conn:
        piped = [(r.project, r.identifier) for r in await conn.execute(query)]
    return sum([await scheduler._handle(project, name, now) for project, name in piped])


async def handle(
    conn: AsyncConnection,
    row: Any,
    now: datetime,
    runs: RunService,
) -> int:
    """Fire a due schedule of a pipeline (its row locked by the caller): the pipeline runs it
    triggered."""
    pipeline_runs = PipelineRunService(runs.db, runs.clock, runs.events, runs, runs.keyring)
    active = False
    if row["last_run"] is not None:
        status = await conn.scalar(
            sa.select(pipeline_run_table.c.status).where(
                pipeline_run_table.c.identifier == row["last_run"]
            )
        )
        active = status == "running"
    decided = plan(state_of(row, active), now)
    declared = await conn.scalar(
        sa.select(pipeline_table.c.parameters).where(
            pipeline_table.c.project == row["project"],
            pipeline_table.c.identifier == row["pipeline"],
        )
    )
    # Only the pipeline's secret parameters are opened (as services/scheduler.py does a job's).
    given = opened_schedule_values(
        pipeline_runs.keyring, row["parameters"], secret_keys_of(declared)
    )
    created = 0
    last_run = row["last_run"]
    for due in decided.fire:
        try:
            async with conn.begin_nested():
                await _record(conn, row, due, None, "fired", None)
                source = {"type": "schedule", "schedule": row["identifier"]}
                identifier, _ = await pipeline_runs.trigger_in(
                    conn, row["project"], row["pipeline"], given, source
                )
        except AlreadyFired:
            continue  # another master, or a restart
        except (Conflict, NotFound, InvalidInput) as refused:  # e.g. the pipeline disabled
            with contextlib.suppress(AlreadyFired):
                await _record(conn, row, due, None, "skipped", str(refused))
            continue
        log.info(
            "schedule %s/%s fired for %s: pipeline run %s",
            row["project"],
            row["identifier"],
            due.isoformat(),
            identifier,
        )
        created += 1
        last_run = identifier
    for due, reason in decided.skipped:
        with contextlib.suppress(AlreadyFired):
            await _record(conn, row, due, None, "skipped", reason)
    values: dict[str, Any] = {
        "next_due_date": decided.next_due_date,
        "queued_due_date": decided.queued_due_date,
        "last_run": last_run,
    }
    if decided.fire:
        values["last_fire_date"] = max(decided.fire)
    if decided.skipped:
        values["last_skip_date"], values["last_skip_reason"] = max(decided.skipped)
    keys = {"project": row["project"], "identifier": row["identifier"]}
    await records.update(conn, schedule_table, keys, values)
    return created


async def _record(
    conn: AsyncConnection,
    row: Any,
    due: datetime,
    run: str | None,
    outcome: str,
    reason: str | None,
) -> None:
    """Record a firing; AlreadyFired if this due time has one."""
    values = firing_row(row, due, run, outcome, reason, utcnow())
    try:
        await records.insert(conn, firing_table, values)
    except Conflict:
        raise AlreadyFired() from None
    await change_log.fired(conn, [values])
    await notification_store.log_skipped(conn, [values])
