"""Apply a configuration document: create or update its projects, jobs, pipelines and
schedules in one transaction. Idempotent: applying the same document twice changes nothing
the second time. Things absent from the document are left alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain.access import Access
from orchestra.domain.documents import parse_document
from orchestra.domain.models import Job
from orchestra.domain.parameters import resolve_parameters
from orchestra.domain.permissions import Action
from orchestra.domain.pipelines import check_pipeline
from orchestra.errors import Forbidden, InvalidInput
from orchestra.notify_settings import NotifySettings
from orchestra.services import notifications as notification_rules
from orchestra.services.events import Events
from orchestra.services.keyring import Keyring
from orchestra.services.parameter_secrets import (
    seal_job_parameters,
    seal_schedule_values,
    secret_keys,
)
from orchestra.services.pipelines import (
    check_schedule_pipeline,
    project_jobs,
    seal_pipeline_webhook,
)
from orchestra.services.scheduler import SCHEDULES, next_due_date
from orchestra.services.webhook_secrets import seal_webhook, webhook_context
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import pipeline as pipeline_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import schedule as schedule_table


@dataclass(frozen=True)
class Change:
    kind: str
    identifier: str
    action: str  # created, updated or unchanged


class ApplyService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        keyring: Keyring,
        notify: NotifySettings | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.keyring = keyring  # secret parameters' values (services/parameter_secrets.py)
        self.notify = notify or NotifySettings()  # what notifications may target

    async def apply(self, document: object, access: Access | None = None) -> list[Change]:
        """Apply the document; with `access` (a caller's), only if it may change every
        project the document names (project.write there; a new project needs it globally)."""
        projects = parse_document(document)
        if access is not None:
            for project in projects:
                if not access.may(Action.PROJECT_WRITE, project["identifier"]):
                    raise Forbidden(
                        f"this needs the permission project.write in project"
                        f" {project['identifier']!r}"
                    )
        changes: list[Change] = []
        async with self.db.transaction() as conn:
            for project in projects:
                jobs = project.pop("jobs")
                schedules = project.pop("schedules")
                pipelines = project.pop("pipelines")
                notifications = project.pop("notifications", [])
                identifier = project["identifier"]
                keys = {"identifier": identifier}
                changes.append(
                    await _put(conn, project_table, keys, project, "project", identifier)
                )
                for job in jobs:
                    keys = {"project": identifier, "identifier": job["identifier"]}
                    name = f"{identifier}/{job['identifier']}"
                    stored = await records.fetch_one(conn, job_table, keys)
                    job["parameters"] = seal_job_parameters(
                        self.keyring, job["parameters"], stored and stored["parameters"]
                    )
                    job["webhook"] = seal_webhook(
                        self.keyring,
                        job["webhook"],
                        stored and stored["webhook"],
                        webhook_context(identifier, "job", job["identifier"]),
                    )
                    changes.append(await _put(conn, job_table, keys, {**job, **keys}, "job", name))
                changes += await apply_pipelines(conn, identifier, pipelines, self.keyring)
                for raw in notifications:
                    try:
                        name, action = await notification_rules.put_in(
                            conn, self.keyring, self.notify, identifier, raw
                        )
                    except InvalidInput as exc:
                        raise InvalidInput(f"notification {raw['identifier']!r}: {exc}") from None
                    changes.append(Change("notification", f"{identifier}/{name}", action))
                for schedule in schedules:
                    keys = {"project": identifier, "identifier": schedule["identifier"]}
                    if schedule["pipeline"] is not None:
                        values = await check_schedule_pipeline(conn, identifier, schedule)
                        changes.append(await _put_schedule(conn, values, keys, self.clock.now()))
                        continue
                    job_row = await records.fetch_one(
                        conn, job_table, {"project": identifier, "identifier": schedule["job"]}
                    )
                    assert job_row is not None  # parse_document checked the job is defined
                    declared = Job.from_row(job_row).parameters
                    stored = await records.fetch_one(conn, schedule_table, keys)
                    try:
                        resolve_parameters(declared, schedule["parameters"])
                        schedule["parameters"] = seal_schedule_values(
                            self.keyring,
                            schedule["parameters"],
                            secret_keys(declared),
                            stored and stored["parameters"],
                        )
                    except InvalidInput as exc:
                        raise InvalidInput(f"schedule {schedule['identifier']!r}: {exc}") from None
                    name = f"{identifier}/{schedule['identifier']}"
                    values = {**schedule, **keys}
                    due = {
                        "next_due_date": next_due_date(identifier, schedule, self.clock.now()),
                        "queued_due_date": None,
                    }
                    changes.append(
                        await _put(conn, schedule_table, keys, values, "schedule", name, due)
                    )
        self.events.publish("dispatch")
        self.events.publish(SCHEDULES)
        return changes


async def _put_schedule(
    conn: AsyncConnection, schedule: Mapping[str, Any], keys: Mapping[str, Any], now: Any
) -> Change:
    name = f"{keys['project']}/{keys['identifier']}"
    due = {
        "next_due_date": next_due_date(keys["project"], dict(schedule), now),
        "queued_due_date": None,
    }
    return await _put(conn, schedule_table, keys, {**schedule, **keys}, "schedule", name, due)


async def apply_pipelines(
    conn: AsyncConnection, project: str, pipelines: list[dict[str, Any]], keyring: Keyring
) -> list[Change]:
    """Check each pipeline against the project's jobs (the document's, just written, and the
    stored ones) and store it."""
    jobs = await project_jobs(conn, project)
    changes: list[Change] = []
    for raw in pipelines:
        try:
            values = check_pipeline(raw, jobs)
        except InvalidInput as exc:
            raise InvalidInput(f"pipeline {raw['identifier']!r}: {exc}") from None
        keys = {"project": project, "identifier": values["identifier"]}
        stored = await records.fetch_one(conn, pipeline_table, keys)
        values["webhook"] = seal_pipeline_webhook(
            keyring, project, values, stored and stored["webhook"]
        )
        name = f"{project}/{values['identifier']}"
        changes.append(await _put(conn, pipeline_table, keys, {**values, **keys}, "pipeline", name))
    return changes


async def _put(
    conn: AsyncConnection,
    table: sa.Table,
    keys: Mapping[str, Any],
    values: Mapping[str, Any],
    kind: str,
    name: str,
    on_change: Mapping[str, Any] | None = None,
) -> Change:
    """Insert or update; `on_change` holds derived values written only when something
    changed (a schedule's next due time), so that an unchanged item stays untouched."""
    current = await records.fetch_one(conn, table, keys, for_update=True)
    if current is None:
        await records.insert(conn, table, {**values, **(on_change or {})})
        return Change(kind, name, "created")
    if all(current[k] == v for k, v in values.items()):
        return Change(kind, name, "unchanged")
    await records.update(conn, table, keys, {**values, **(on_change or {})})
    return Change(kind, name, "updated")
