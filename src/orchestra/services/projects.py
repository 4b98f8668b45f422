"""Projects, their jobs and schedules: create, replace, change, delete, and apply documents."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain.documents import parse_job, parse_project, parse_schedule
from orchestra.domain.models import Job, Project, Schedule
from orchestra.domain.pages import Listing
from orchestra.domain.parameters import resolve_parameters
from orchestra.domain.statuses import ACTIVE_RUN_STATUSES
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services.events import Events
from orchestra.services.keyring import Keyring
from orchestra.services.parameter_secrets import (
    seal_job_parameters,
    seal_schedule_values,
    secret_keys,
    shown_job,
    shown_schedule,
)
from orchestra.services.pipelines import check_schedule_pipeline, pipeline_naming_job
from orchestra.services.scheduler import SCHEDULES, next_due_date
from orchestra.services.webhook_secrets import seal_webhook, webhook_context
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import schedule as schedule_table

Parser = Callable[[object], dict[str, Any]]


class ProjectService:
    def __init__(self, db: Database, clock: Clock, events: Events, keyring: Keyring) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.keyring = keyring  # secret parameters' values (services/parameter_secrets.py)

    # Projects.

    async def list_projects(
        self, cursor: str | None, limit: int | None, among: Iterable[str] | None = None
    ) -> Listing[Project]:
        """A page of the projects; `among` (None: all) keeps only those named there."""
        query = sa.select(project_table)
        if among is not None:
            query = query.where(project_table.c.identifier.in_(sorted(among)))
        async with self.db.read() as conn:
            found = await records.page(conn, query, [project_table.c.identifier], cursor, limit)
        return found.map(Project.from_row)

    async def get_project(self, identifier: str) -> Project:
        async with self.db.read() as conn:
            return await self._project(conn, identifier)

    async def create_project(self, data: Mapping[str, Any]) -> Project:
        values = parse_project(data)
        async with self.db.transaction() as conn:
            await self._absent(conn, project_table, {"identifier": values["identifier"]}, "project")
            await records.insert(conn, project_table, values)
            return await self._project(conn, values["identifier"])

    async def put_project(self, identifier: str, data: Mapping[str, Any]) -> tuple[Project, bool]:
        """Create or replace; returns the project and whether it was created."""
        values = parse_project(_with_identifier(data, identifier))
        async with self.db.transaction() as conn:
            created = await self._upsert(conn, project_table, {"identifier": identifier}, values)
            project = await self._project(conn, identifier)
        self.events.publish("dispatch")
        return project, created

    async def patch_project(self, identifier: str, changes: Mapping[str, Any]) -> Project:
        async with self.db.transaction() as conn:
            current = await self._project(conn, identifier)
            merged = _merge(_project_fields(current), changes, identifier)
            await records.update(
                conn, project_table, {"identifier": identifier}, parse_project(merged)
            )
            project = await self._project(conn, identifier)
        self.events.publish("dispatch")
        return project

    async def delete_project(self, identifier: str) -> None:
        """Delete a project with its jobs, schedules and finished runs; refused while runs are
        pending or running."""
        async with self.db.transaction() as conn:
            await self._project(conn, identifier)
            active = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(run_table)
                .where(
                    run_table.c.project == identifier, run_table.c.status.in_(ACTIVE_RUN_STATUSES)
                )
            )
            if active:
                raise Conflict(f"project {identifier!r} has {active} pending or running runs")
            await records.delete(conn, project_table, {"identifier": identifier})

    async def _project(self, conn: AsyncConnection, identifier: str) -> Project:
        row = await records.fetch_one(conn, project_table, {"identifier": identifier})
        if row is None:
            raise NotFound(f"no project {identifier!r}")
        return Project.from_row(row)

    # Jobs.

    async def list_jobs(self, project: str, cursor: str | None, limit: int | None) -> Listing[Job]:
        async with self.db.read() as conn:
            await self._project(conn, project)
            query = sa.select(job_table).where(job_table.c.project == project)
            found = await records.page(conn, query, [job_table.c.identifier], cursor, limit)
        return found.map(lambda r: shown_job(Job.from_row(r)))

    async def get_job(self, project: str, identifier: str) -> Job:
        async with self.db.read() as conn:
            return shown_job(await self._job(conn, project, identifier))

    async def create_job(self, project: str, data: Mapping[str, Any]) -> Job:
        values = parse_job(data)
        values["parameters"] = seal_job_parameters(self.keyring, values["parameters"], None)
        values["webhook"] = self._seal_webhook(project, values, None)
        keys = {"project": project, "identifier": values["identifier"]}
        async with self.db.transaction() as conn:
            await self._project(conn, project)
            await self._absent(conn, job_table, keys, "job")
            await records.insert(conn, job_table, {**values, "project": project})
            return shown_job(await self._job(conn, project, values["identifier"]))

    async def put_job(
        self, project: str, identifier: str, data: Mapping[str, Any]
    ) -> tuple[Job, bool]:
        values = parse_job(_with_identifier(data, identifier))
        async with self.db.transaction() as conn:
            await self._project(conn, project)
            keys = {"project": project, "identifier": identifier}
            stored = await records.fetch_one(conn, job_table, keys)
            values["parameters"] = seal_job_parameters(
                self.keyring, values["parameters"], stored and stored["parameters"]
            )
            values["webhook"] = self._seal_webhook(project, values, stored and stored["webhook"])
            created = await self._upsert(conn, job_table, keys, {**values, "project": project})
            job = await self._job(conn, project, identifier)
        self.events.publish("dispatch")
        return shown_job(job), created

    async def patch_job(self, project: str, identifier: str, changes: Mapping[str, Any]) -> Job:
        async with self.db.transaction() as conn:
            current = await self._job(conn, project, identifier)
            values = parse_job(_merge(_job_fields(current), changes, identifier))
            stored = [p.to_dict() for p in current.parameters]
            values["parameters"] = seal_job_parameters(self.keyring, values["parameters"], stored)
            values["webhook"] = self._seal_webhook(project, values, current.webhook)
            keys = {"project": project, "identifier": identifier}
            await records.update(conn, job_table, keys, values)
            job = await self._job(conn, project, identifier)
        self.events.publish("dispatch")
        return shown_job(job)

    async def delete_job(self, project: str, identifier: str) -> None:
        """Delete a job; its runs stay as history. Refused while a schedule triggers it."""
        async with self.db.transaction() as conn:
            await self._job(conn, project, identifier)
            used_by = await conn.scalar(
                sa.select(schedule_table.c.identifier).where(
                    schedule_table.c.project == project, schedule_table.c.job == identifier
                )
            )
            if used_by:
                raise Conflict(f"job {identifier!r} is triggered by schedule {used_by!r}")
            named_by = await pipeline_naming_job(conn, project, identifier)
            if named_by:
                raise Conflict(f"job {identifier!r} is run by pipeline {named_by!r}")
            await records.delete(conn, job_table, {"project": project, "identifier": identifier})

    def _seal_webhook(
        self, project: str, values: Mapping[str, Any], stored: object
    ) -> dict[str, Any] | None:
        context = webhook_context(project, "job", values["identifier"])
        return seal_webhook(self.keyring, values.get("webhook"), stored, context)

    async def _job(self, conn: AsyncConnection, project: str, identifier: str) -> Job:
        row = await records.fetch_one(
            conn, job_table, {"project": project, "identifier": identifier}
        )
        if row is None:
            await self._project(conn, project)
            raise NotFound(f"no job {identifier!r} in project {project!r}")
        return Job.from_row(row)

    # Schedules.

    async def list_schedules(
        self, project: str, cursor: str | None, limit: int | None
    ) -> Listing[Schedule]:
        async with self.db.read() as conn:
            await self._project(conn, project)
            query = sa.select(schedule_table).where(schedule_table.c.project == project)
            found = await records.page(conn, query, [schedule_table.c.identifier], cursor, limit)
        return found.map(lambda r: shown_schedule(Schedule.from_row(r)))

    async def get_schedule(self, project: str, identifier: str) -> Schedule:
        async with self.db.read() as conn:
            return shown_schedule(await self._schedule(conn, project, identifier))

    async def create_schedule(self, project: str, data: Mapping[str, Any]) -> Schedule:
        values = self._schedule_values(project, parse_schedule(data))
        keys = {"project": project, "identifier": values["identifier"]}
        async with self.db.transaction() as conn:
            values = await self._check_schedule_job(conn, project, values, None)
            await self._absent(conn, schedule_table, keys, "schedule")
            await records.insert(conn, schedule_table, {**values, "project": project})
            schedule = await self._schedule(conn, project, values["identifier"])
        self.events.publish(SCHEDULES)
        return shown_schedule(schedule)

    async def put_schedule(
        self, project: str, identifier: str, data: Mapping[str, Any]
    ) -> tuple[Schedule, bool]:
        values = self._schedule_values(project, parse_schedule(_with_identifier(data, identifier)))
        async with self.db.transaction() as conn:
            keys = {"project": project, "identifier": identifier}
            stored = await records.fetch_one(conn, schedule_table, keys)
            values = await self._check_schedule_job(
                conn, project, values, stored and stored["parameters"]
            )
            created = await self._upsert(conn, schedule_table, keys, {**values, "project": project})
            schedule = await self._schedule(conn, project, identifier)
        self.events.publish(SCHEDULES)
        return shown_schedule(schedule), created

    async def patch_schedule(
        self, project: str, identifier: str, changes: Mapping[str, Any]
    ) -> Schedule:
        async with self.db.transaction() as conn:
            current = await self._schedule(conn, project, identifier)
            merged = _merge(_schedule_fields(current), changes, identifier)
            values = self._schedule_values(project, parse_schedule(merged))
            values = await self._check_schedule_job(conn, project, values, current.parameters)
            keys = {"project": project, "identifier": identifier}
            await records.update(conn, schedule_table, keys, values)
            schedule = await self._schedule(conn, project, identifier)
        self.events.publish(SCHEDULES)
        return shown_schedule(schedule)

    async def delete_schedule(self, project: str, identifier: str) -> None:
        async with self.db.transaction() as conn:
            await self._schedule(conn, project, identifier)
            await records.delete(
                conn, schedule_table, {"project": project, "identifier": identifier}
            )

    def _schedule_values(self, project: str, values: dict[str, Any]) -> dict[str, Any]:
        """A saved schedule starts (again) from now: no catch-up of the time before."""
        return {
            **values,
            "next_due_date": next_due_date(project, values, self.clock.now()),
            "queued_due_date": None,
        }

    async def _schedule(self, conn: AsyncConnection, project: str, identifier: str) -> Schedule:
        keys = {"project": project, "identifier": identifier}
        row = await records.fetch_one(conn, schedule_table, keys)
        if row is None:
            await self._project(conn, project)
            raise NotFound(f"no schedule {identifier!r} in project {project!r}")
        return Schedule.from_row(row)

    async def _check_schedule_job(
        self, conn: AsyncConnection, project: str, values: Mapping[str, Any], stored: object
    ) -> dict[str, Any]:
        """A schedule must name an existing job and give it parameters it accepts; its values
        with those of the job's secret parameters encrypted (`stored`: the values it had).
        A schedule of a pipeline: services/pipelines.py."""
        if values.get("pipeline") is not None:
            return await check_schedule_pipeline(conn, project, values)
        try:
            job = await self._job(conn, project, values["job"])
        except NotFound as exc:
            raise InvalidInput(str(exc)) from None
        resolve_parameters(job.parameters, values["parameters"])
        secret = secret_keys(job.parameters)
        sealed = seal_schedule_values(self.keyring, values["parameters"], secret, stored)
        return {**values, "parameters": sealed}

    # Helpers.

    async def _absent(
        self, conn: AsyncConnection, table: sa.Table, keys: Mapping[str, Any], what: str
    ) -> None:
        if await records.fetch_one(conn, table, keys) is not None:
            raise Conflict(f"{what} {keys['identifier']!r} already exists")

    async def _upsert(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        keys: Mapping[str, Any],
        values: Mapping[str, Any],
    ) -> bool:
        if await records.fetch_one(conn, table, keys, for_update=True) is None:
            await records.insert(conn, table, values)
            return True
        await records.update(conn, table, keys, values)
        return False


def _with_identifier(data: Mapping[str, Any], identifier: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput("the body must be a JSON object")
    given = data.get("identifier", identifier)
    if given != identifier:
        raise InvalidInput(
            f"identifier {given!r} in the body differs from {identifier!r} in the path"
        )
    return {**data, "identifier": identifier}


def _merge(current: dict[str, Any], changes: Mapping[str, Any], identifier: str) -> dict[str, Any]:
    if not isinstance(changes, Mapping):
        raise InvalidInput("the body must be a JSON object")
    if changes.get("identifier", identifier) != identifier:
        raise InvalidInput("an identifier cannot be changed")
    return {**current, **changes}


def _project_fields(project: Project) -> dict[str, Any]:
    return {
        "identifier": project.identifier,
        "display_name": project.display_name,
        "services": project.services,
        "is_enabled": project.is_enabled,
        "concurrency": project.concurrency,
    }


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "identifier": job.identifier,
        "display_name": job.display_name,
        "description": job.description,
        "workspace": job.workspace,
        "steps": [s.to_dict() for s in job.steps],
        "parameters": [p.to_dict() for p in job.parameters],
        "properties": job.properties,
        "is_enabled": job.is_enabled,
        "lease": job.lease,
        "timeout": job.timeout,
        "retry": job.retry,
        "concurrency": job.concurrency,
        "priority": job.priority,
        "expiry": job.expiry,
        "retention": job.retention,
        "sandbox": job.sandbox,
        "limits": job.limits,
        "environment": job.environment,
        "artifacts": job.artifacts,
        "webhook": job.webhook,
    }


def _schedule_fields(schedule: Schedule) -> dict[str, Any]:
    return {
        "identifier": schedule.identifier,
        "display_name": schedule.display_name,
        "job": schedule.job,
        "pipeline": schedule.pipeline,
        "parameters": schedule.parameters,
        "expression": schedule.expression,
        "time_zone": schedule.time_zone,
        "is_enabled": schedule.is_enabled,
        "overlap": schedule.overlap,
        "catchup": schedule.catchup,
        "catchup_window": schedule.catchup_window,
        "catchup_max": schedule.catchup_max,
    }
