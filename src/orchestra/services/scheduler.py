"""The scheduler: fires due schedules, at most once per due time, with their policies.

A tick reads only schedules whose next due time has come (an index on `next_due_date`), so its
cost does not grow with the schedules that are not due. Due schedules are handled in batches,
each in one transaction that records the firings (unique on schedule and due time), creates the
runs and advances the schedules together: a master that dies half way leaves nothing half done,
and two masters (or one that was paused and woke up late) cannot fire the same due time twice.
A batch that meets a firing recorded meanwhile rolls back whole, and its schedules are then
handled one per transaction. On PostgreSQL a batch locks its schedules (FOR UPDATE SKIP LOCKED),
so batches in flight together, of one master or several, hold disjoint schedules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock, utcnow
from orchestra.domain import cron
from orchestra.domain.schedules import Plan, ScheduleState, plan, seed
from orchestra.domain.statuses import ACTIVE_RUN_STATUSES
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services import change_log, pipeline_schedules
from orchestra.services.events import Events
from orchestra.services.parameter_secrets import (
    job_secret_keys,
    opened_schedule_values,
    secret_keys_of,
)
from orchestra.services.runs import RunService
from orchestra.services.schedule_rows import firing_key, firing_row, keys_in, state_of
from orchestra.storage import notifications as notification_store
from orchestra.storage import records
from orchestra.storage import runs as run_storage
from orchestra.storage.engine import Database
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import schedule as schedule_table
from orchestra.storage.schema import schedule_firing as firing_table

log = logging.getLogger(__name__)
# A new run's columns and its steps, as RunService.pending_of_job makes them.
_Pending = tuple[dict[str, Any], list[dict[str, Any]]]
TICK_BATCH = 2000  # due schedules read at a time; handled FIRE_BATCH at a time
TICK_ROUNDS = 10  # reads per tick at most (the master's loop ticks again soon after)
# Due schedules handled together in one transaction (bulk inserts of runs, steps, firings):
# 10,000 firings took 1.2 s of master CPU in batches of 500, 1.3 s in batches of 200 (fewer
# statements, and on PostgreSQL fewer commits to wait for).
FIRE_BATCH = 500
# Batches in flight at once on PostgreSQL: the server runs one batch's statements while the
# master builds the next (the batches hold disjoint schedules). SQLite has one writer.
FIRE_CONCURRENCY = 2


def next_due_date(project: str, values: dict[str, Any], after: datetime) -> datetime | None:
    """The first due time after `after` for a schedule's values (None when disabled)."""
    if not values.get("is_enabled", True):
        return None
    parsed = cron.parse(values["expression"], seed(project, values["identifier"]))
    return cron.next_due(parsed, after, cron.time_zone(values.get("time_zone") or "UTC"))


SCHEDULES = "schedules"  # the signal that schedules were saved: the master looks again
_NEXT_WAKEUP = sa.select(
    sa.select(sa.func.min(schedule_table.c.next_due_date))
    .where(schedule_table.c.is_enabled.is_(True))
    .scalar_subquery(),
    sa.exists().where(schedule_table.c.queued_due_date.is_not(None)),
)


class Scheduler:
    def __init__(self, db: Database, clock: Clock, events: Events, runs: RunService) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.runs = runs

    async def tick(self, now: datetime | None = None) -> int:
        """Handle every schedule due at `now`; returns how many runs were created. Due
        schedules are read TICK_BATCH at a time, again while there are more (each schedule at
        most once per tick), and handled in batches of FIRE_BATCH."""
        now = now or self.clock.now()
        created = 0
        plans: dict[tuple[Any, ...], Plan] = {}
        handled: set[tuple[str, str]] = set()
        for _ in range(TICK_ROUNDS):
            due, more = await self._due(now)
            fresh = [key for key in due if key not in handled]
            if not fresh:
                break
            handled.update(fresh)
            fired = await self._handle_all(fresh, now, plans)
            if fired:
                created += fired
                self.events.publish("dispatch")
            if not more:
                break
        return created

    async def _handle_all(
        self, keys: list[tuple[str, str]], now: datetime, plans: dict[tuple[Any, ...], Plan]
    ) -> int:
        chunks = [keys[i : i + FIRE_BATCH] for i in range(0, len(keys), FIRE_BATCH)]
        if self.db.one_writer:  # concurrent batches would only wait for each other
            return sum([await self._handle_chunk(chunk, now, plans) for chunk in chunks])
        slots = asyncio.Semaphore(FIRE_CONCURRENCY)

        async def handle(chunk: list[tuple[str, str]]) -> int:
            async with slots:
                return await self._handle_chunk(chunk, now, plans)

        return sum(await asyncio.gather(*(handle(chunk) for chunk in chunks)))

    async def _handle_chunk(
        self, chunk: list[tuple[str, str]], now: datetime, plans: dict[tuple[Any, ...], Plan]
    ) -> int:
        try:  # a batch leaves the schedules of pipelines, handled one by one after it
            created = await self._handle_batch(chunk, now, plans)
            return created + await pipeline_schedules.after_batch(self, chunk, now)
        except Exception:
            # A firing that conflicts (recorded meanwhile) or anything unexpected: the batch
            # was rolled back whole; each schedule is handled alone instead.
            log.debug("schedules: batch of %d failed; one by one", len(chunk), exc_info=True)
        created = 0
        for project, identifier in chunk:
            try:
                created += await self._handle(project, identifier, now)
            except Exception:
                log.exception("schedule %s/%s: tick failed", project, identifier)
        return created

    async def _handle_batch(
        self, keys: list[tuple[str, str]], now: datetime, plans: dict[tuple[Any, ...], Plan]
    ) -> int:
        """Handle these due schedules in one transaction: the same decisions as `_handle`,
        with every read and write done once for the batch. A firing that exists already
        fails the whole batch (its unique key), which the caller then handles one by one."""
        async with self.db.transaction() as conn:
            # Locked as read, skipping those another master has (SQLite, one writer, has no
            # row locks: its dialect leaves the clause out).
            query = (
                sa.select(schedule_table)
                .where(keys_in(schedule_table, keys))
                .with_for_update(skip_locked=True)
            )
            rows = [
                r
                for r in (await conn.execute(query)).mappings().all()
                if r["is_enabled"]
                and r["pipeline"] is None
                and r["next_due_date"] is not None
                and (r["next_due_date"] <= now or r["queued_due_date"] is not None)
            ]
            if not rows:
                return 0
            last_runs = {r["last_run"] for r in rows if r["last_run"] is not None}
            active: set[str] = set()
            if last_runs:
                statuses = await conn.execute(
                    sa.select(run_table.c.identifier, run_table.c.status).where(
                        run_table.c.identifier.in_(last_runs)
                    )
                )
                live = {s.value for s in ACTIVE_RUN_STATUSES}
                active = {r.identifier for r in statuses if r.status in live}
            wanted = {(r["project"], r["job"]) for r in rows}
            jobs = {
                (j["project"], j["identifier"]): j
                for j in (
                    await conn.execute(sa.select(job_table).where(keys_in(job_table, wanted)))
                ).mappings()
            }
            projects = set(
                (
                    await conn.execute(
                        sa.select(project_table.c.identifier).where(
                            project_table.c.identifier.in_({p for p, _ in wanted})
                        )
                    )
                ).scalars()
            )
            runs: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
            firings: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            stamp = utcnow()
            warnings: dict[str, str | None] = {}  # per job properties, within this batch
            # A new run of a job with given parameters, once per batch (or why there is none).
            pending: dict[tuple[str, str, str], _Pending | str] = {}
            fired_log: list[tuple[Any, datetime, str]] = []
            for row in rows:
                previous_active = row["last_run"] in active
                # The plan depends on the state only: schedules alike (same expression, same
                # due time, no H) share it, and it is looked up without building the state.
                expression = row["expression"]
                hashed = "H" in expression.upper() or "@" in expression
                key = (
                    expression,
                    row["time_zone"],
                    row["overlap"],
                    row["catchup"],
                    row["catchup_window"],
                    row["catchup_max"],
                    row["next_due_date"],
                    row["queued_due_date"],
                    previous_active,
                    seed(row["project"], row["identifier"]) if hashed else "",
                )
                decided = plans.get(key)
                if decided is None:
                    decided = plans[key] = plan(state_of(row, previous_active), now)
                last_run = row["last_run"]
                for due in decided.fire:
                    made = pending.get(
                        template := (
                            row["project"],
                            row["job"],
                            json.dumps(row["parameters"], sort_keys=True, default=str),
                        )
                    )
                    if made is None:
                        made = pending[template] = await self._pending(
                            conn, row, jobs, projects, warnings
                        )
                    if isinstance(made, str):
                        firings.append(firing_row(row, due, None, "skipped", made, stamp))
                        continue
                    values = {
                        **made[0],
                        "identifier": str(uuid.uuid4()),
                        "source": {"type": "schedule", "schedule": row["identifier"]},
                    }
                    runs.append((values, made[1]))
                    firings.append(firing_row(row, due, values["identifier"], "fired", None, stamp))
                    last_run = values["identifier"]
                    fired_log.append((row, due, values["identifier"]))
                for due, reason in decided.skipped:
                    firings.append(firing_row(row, due, None, "skipped", reason, stamp))
                last_skip_date, last_skip_reason = (
                    max(decided.skipped)
                    if decided.skipped
                    else (row["last_skip_date"], row["last_skip_reason"])
                )
                updates.append(
                    {
                        "b_project": row["project"],
                        "b_identifier": row["identifier"],
                        "next_due_date": decided.next_due_date,
                        "queued_due_date": decided.queued_due_date,
                        "last_run": last_run,
                        "last_fire_date": max(decided.fire)
                        if decided.fire
                        else row["last_fire_date"],
                        "last_skip_date": last_skip_date,
                        "last_skip_reason": last_skip_reason,
                        "update_date": stamp,
                    }
                )
            await run_storage.insert_runs(conn, runs)
            if firings:
                await conn.execute(firing_table.insert(), firings)
                await change_log.fired(conn, firings)
                await notification_store.log_skipped(conn, firings)
            await conn.execute(
                schedule_table.update()
                .where(
                    schedule_table.c.project == sa.bindparam("b_project"),
                    schedule_table.c.identifier == sa.bindparam("b_identifier"),
                )
                .values(
                    {
                        name: sa.bindparam(name)
                        for name in (
                            "next_due_date",
                            "queued_due_date",
                            "last_run",
                            "last_fire_date",
                            "last_skip_date",
                            "last_skip_reason",
                            "update_date",
                        )
                    }
                ),
                updates,
            )
        if fired_log:
            log.info(
                "schedules: %d fired (due %s to %s)",
                len(fired_log),
                min(due for _, due, _ in fired_log).isoformat(),
                max(due for _, due, _ in fired_log).isoformat(),
            )
        if log.isEnabledFor(logging.DEBUG):
            for row, due, run_id in fired_log:
                log.debug(
                    "schedule %s/%s fired for %s: run %s",
                    row["project"],
                    row["identifier"],
                    due.isoformat(),
                    run_id,
                )
        return len(runs)

    async def _pending(
        self,
        conn: AsyncConnection,
        row: Any,
        jobs: dict[tuple[str, str], Any],
        projects: set[str],
        warnings: dict[str, str | None],
    ) -> _Pending | str:
        """The columns of a new run of this schedule's job with its parameters, and its
        steps; or why it cannot run. A batch builds it once per job and parameters and gives
        each run its own identifier and source: every other column comes from the job alone
        (`pending_of_job` reads nothing else from the schedule)."""
        job = jobs.get((row["project"], row["job"]))
        if job is None:
            if row["project"] not in projects:
                return f"no project {row['project']!r}"
            return f"no job {row['job']!r} in project {row['project']!r}"
        try:
            secret = secret_keys_of(job["parameters"])
            given = opened_schedule_values(self.runs.keyring, row["parameters"], secret)
            return await self.runs.pending_of_job(conn, job, given, {}, warnings=warnings)
        except (NotFound, InvalidInput) as exc:
            return str(exc)

    async def next_wakeup(self) -> tuple[datetime | None, bool]:
        """The earliest due time of an enabled schedule, and whether some schedule holds a
        queued due time (it fires when its job's run ends, which no signal announces)."""
        async with self.db.read() as conn:
            row = (await conn.execute(_NEXT_WAKEUP)).one()
        return row[0], bool(row[1])

    async def _due(self, now: datetime) -> tuple[list[tuple[str, str]], bool]:
        """Up to TICK_BATCH due schedules, the earliest first, and those with a queued due
        time; and whether more may be due."""
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
            more = len(rows) >= TICK_BATCH
            rows += list(await conn.execute(queued.limit(TICK_BATCH)))
        return list(dict.fromkeys((r.project, r.identifier) for r in rows)), more

    async def _handle(self, project: str, identifier: str, now: datetime) -> int:
        async with self.db.transaction() as conn:
            query = (
                sa.select(schedule_table)
                .where(
                    schedule_table.c.project == project, schedule_table.c.identifier == identifier
                )
                .with_for_update(skip_locked=True)
            )  # another master has it (as above)
            row = (await conn.execute(query)).mappings().first()
            if row is None or not row["is_enabled"] or row["next_due_date"] is None:
                return 0
            if row["next_due_date"] > now and row["queued_due_date"] is None:
                return 0  # handled meanwhile by another master
            if row["pipeline"] is not None:
                return await pipeline_schedules.handle(conn, row, now, self.runs)
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
        return state_of(row, previous_active)

    async def _fire(self, conn: AsyncConnection, row: Any, due: datetime) -> str | None:
        """Record the firing and create its run, or record why it could not run."""
        try:
            async with conn.begin_nested():
                await self._record(conn, row, due, None, "fired", None, strict=True)
                source = {
                    "type": "schedule",
                    "schedule": row["identifier"],
                }
                secret = await job_secret_keys(conn, row["project"], row["job"])
                given = opened_schedule_values(self.runs.keyring, row["parameters"], secret)
                run = await self.runs.trigger_in(conn, row["project"], row["job"], given, source)
                await conn.execute(
                    firing_table.update().where(*firing_key(row, due)).values(run=run.identifier)
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
        values = firing_row(row, due, run, outcome, reason, self.clock.now())
        try:
            await records.insert(conn, firing_table, values)
        except Conflict:
            if strict:
                raise
            return
        await change_log.fired(conn, [values])
        await notification_store.log_skipped(conn, [values])
