"""The scheduler: fires due schedules, at most once per due time, with their policies.

A tick reads only schedules whose next due time has come (an index on `next_due_date`), so its
cost does not grow with the schedules that are not due. Each schedule is handled in its own
transaction that records the firing (unique on schedule and due time), creates the run and
advances the schedule together: a master that dies half way leaves nothing half done, and two
masters (or one that was paused and woke up late) cannot fire the same due time twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain import cron
from orchestra.domain.schedules import Catchup, Overlap, ScheduleState, plan, seed
from orchestra.domain.statuses import ACTIVE_RUN_STATUSES
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services.events import Events
from orchestra.services.runs import RunService
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import schedule as schedule_table
from orchestra.storage.schema import schedule_firing as firing_table

log = logging.getLogger(__name__)
TICK_BATCH = 200


def next_due_date(project: str, values: dict[str, Any], after: datetime) -> datetime | None:
    """The first due time after `after` for a schedule's values (None when disabled)."""
    if not values.get("is_enabled", True):
        return None
    parsed = cron.parse(values["expression"], seed(project, values["identifier"]))
    return cron.next_due(parsed, after, cron.time_zone(values.get("time_zone") or "UTC"))


class Scheduler:
    def __init__(self, db: Database, clock: Clock, events: Events, runs: RunService) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.runs = runs

    async def tick(self, now: datetime | None = None) -> int:
        """Handle every schedule due at `now`; returns how many runs were created."""
        now = now or self.clock.now()
        created = 0
        for project, identifier in await self._due(now):
            try:
                created += await self._handle(project, identifier, now)
            except Exception:
                log.exception("schedule %s/%s: tick failed", project, identifier)
        if created:
            self.events.publish("dispatch")
        return created

    async def next_wakeup(self) -> datetime | None:
        async with self.db.read() as conn:
            wakeup: datetime | None = await conn.scalar(
                sa.select(sa.func.min(schedule_table.c.next_due_date)).where(
                    schedule_table.c.is_enabled.is_(True)
                )
            )
        return wakeup

    async def _due(self, now: datetime) -> list[tuple[str, str]]:
        async with self.db.read() as conn:
            due = sa.select(schedule_table.c.project, schedule_table.c.identifier).where(
                schedule_table.c.is_enabled.is_(True), schedule_table.c.next_due_date <= now
            )
            queued = sa.select(schedule_table.c.project, schedule_table.c.identifier).where(
                schedule_table.c.queued_due_date.is_not(None)
            )
            rows = list(
                await conn.execute(due.order_by(schedule_table.c.next_due_date).limit(TICK_BATCH))
            )
            rows += list(await conn.execute(queued.limit(TICK_BATCH)))
        return list(dict.fromkeys((r.project, r.identifier) for r in rows))

    async def _handle(self, project: str, identifier: str, now: datetime) -> int:
        async with self.db.transaction() as conn:
            query = sa.select(schedule_table).where(
                schedule_table.c.project == project, schedule_table.c.identifier == identifier
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)  # another master has it
            row = (await conn.execute(query)).mappings().first()
            if row is None or not row["is_enabled"] or row["next_due_date"] is None:
                return 0
            if row["next_due_date"] > now and row["queued_due_date"] is None:
                return 0  # handled meanwhile by another master
            decided = plan(await self._state(conn, row), now)
            created = 0
            last_run = row["last_run"]
            for due in decided.fire:
                run_id = await self._fire(conn, row, due)
                if run_id is not None:
                    created += 1
                    last_run = run_id
            for due, reason in decided.skipped:
                await self._record(conn, row, due, None, "skipped", reason)
            values: dict[str, Any] = {
                "next_due_date": decided.next_due_date,
                "queued_due_date": decided.queued_due_date,
                "last_run": last_run,
            }
            if decided.fire:
                values["last_fire_date"] = max(decided.fire)
            if decided.skipped:
                values["last_skip_date"], values["last_skip_reason"] = max(decided.skipped)
            await records.update(
                conn, schedule_table, {"project": project, "identifier": identifier}, values
            )
        return created

    async def _state(self, conn: AsyncConnection, row: Any) -> ScheduleState:
        previous_active = False
        if row["last_run"] is not None:
            status = await conn.scalar(
                sa.select(run_table.c.status).where(run_table.c.identifier == row["last_run"])
            )
            previous_active = status in {s.value for s in ACTIVE_RUN_STATUSES}
        return ScheduleState(
            expression=row["expression"],
            time_zone=row["time_zone"],
            seed=seed(row["project"], row["identifier"]),
            overlap=Overlap(row["overlap"]),
            catchup=Catchup(row["catchup"]),
            catchup_window=row["catchup_window"],
            catchup_max=row["catchup_max"],
            next_due_date=row["next_due_date"],
            queued_due_date=row["queued_due_date"],
            previous_active=previous_active,
        )

    async def _fire(self, conn: AsyncConnection, row: Any, due: datetime) -> str | None:
        """Record the firing and create its run, or record why it could not run."""
        try:
            async with conn.begin_nested():
                await self._record(conn, row, due, None, "fired", None, strict=True)
                source = {
                    "type": "schedule",
                    "schedule": row["identifier"],
                }
                run = await self.runs.trigger_in(
                    conn, row["project"], row["job"], row["parameters"], source
                )
                await conn.execute(
                    firing_table.update().where(*_firing_key(row, due)).values(run=run.identifier)
                )
        except Conflict:
            return None  # this due time was fired already (another master, a restart)
        except (NotFound, InvalidInput) as exc:
            await self._record(conn, row, due, None, "skipped", str(exc))
            return None
        log.info(
            "schedule %s/%s fired for %s: run %s",
            row["project"],
            row["identifier"],
            due.isoformat(),
            run.identifier,
        )
        return run.identifier

    async def _record(
        self,
        conn: AsyncConnection,
        row: Any,
        due: datetime,
        run: str | None,
        outcome: str,
        reason: str | None,
        *,
        strict: bool = False,
    ) -> None:
        values = {
            "project": row["project"],
            "schedule": row["identifier"],
            "due_date": due,
            "run": run,
            "outcome": outcome,
            "reason": reason,
        }
        try:
            await records.insert(conn, firing_table, values)
        except Conflict:
            if strict:
                raise


def _firing_key(row: Any, due: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        firing_table.c.project == row["project"],
        firing_table.c.schedule == row["identifier"],
        firing_table.c.due_date == due,
    ]
