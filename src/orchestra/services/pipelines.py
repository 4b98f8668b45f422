"""Pipelines of a project: create, replace, change, delete; each checked against the project's
jobs (domain/pipelines.py) in the transaction that stores it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain.pages import Listing
from orchestra.domain.parameters import parse_parameters, resolve_parameters
from orchestra.domain.pipelines import Pipeline, check_pipeline, jobs_named
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services.events import Events
from orchestra.services.keyring import Keyring
from orchestra.services.webhook_secrets import seal_webhook, webhook_context
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import pipeline as pipeline_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import schedule as schedule_table


class PipelineService:
    def __init__(self, db: Database, clock: Clock, events: Events, keyring: Keyring) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.keyring = keyring  # webhook secrets (services/webhook_secrets.py)

    async def list_pipelines(
        self, project: str, cursor: str | None, limit: int | None
    ) -> Listing[Pipeline]:
        async with self.db.read() as conn:
            await _project(conn, project)
            query = sa.select(pipeline_table).where(pipeline_table.c.project == project)
            found = await records.page(conn, query, [pipeline_table.c.identifier], cursor, limit)
        return found.map(Pipeline.from_row)

    async def get_pipeline(self, project: str, identifier: str) -> Pipeline:
        async with self.db.read() as conn:
            return await pipeline_of(conn, project, identifier)

    async def create_pipeline(self, project: str, data: Mapping[str, Any]) -> Pipeline:
        async with self.db.transaction() as conn:
            await _project(conn, project)
            values = check_pipeline(_body(data), await project_jobs(conn, project))
            keys = {"project": project, "identifier": values["identifier"]}
            if await records.fetch_one(conn, pipeline_table, keys) is not None:
                raise Conflict(f"pipeline {values['identifier']!r} already exists")
            values["webhook"] = seal_pipeline_webhook(self.keyring, project, values, None)
            await records.insert(conn, pipeline_table, {**values, "project": project})
            return await pipeline_of(conn, project, values["identifier"])

    async def put_pipeline(
        self, project: str, identifier: str, data: Mapping[str, Any]
    ) -> tuple[Pipeline, bool]:
        """Create or replace; returns the pipeline and whether it was created."""
        body = _body(data)
        if body.get("identifier", identifier) != identifier:
            raise InvalidInput(
                f"identifier {body['identifier']!r} in the body differs from {identifier!r} "
                "in the path"
            )
        async with self.db.transaction() as conn:
            await _project(conn, project)
            values = check_pipeline(
                {**body, "identifier": identifier}, await project_jobs(conn, project)
            )
            keys = {"project": project, "identifier": identifier}
            stored = await records.fetch_one(conn, pipeline_table, keys, for_update=True)
            values["webhook"] = seal_pipeline_webhook(
                self.keyring, project, values, stored and stored["webhook"]
            )
            if stored is None:
                await records.insert(conn, pipeline_table, {**values, "project": project})
            else:
                await records.update(conn, pipeline_table, keys, values)
            return await pipeline_of(conn, project, identifier), stored is None

    async def patch_pipeline(
        self, project: str, identifier: str, changes: Mapping[str, Any]
    ) -> Pipeline:
        """Change the fields given; the others keep their values."""
        body = _body(changes)
        if body.get("identifier", identifier) != identifier:
            raise InvalidInput("an identifier cannot be changed")
        async with self.db.transaction() as conn:
            current = await pipeline_of(conn, project, identifier)
            values = check_pipeline({**current.fields(), **body}, await project_jobs(conn, project))
            stored = current.webhook
            values["webhook"] = seal_pipeline_webhook(self.keyring, project, values, stored)
            keys = {"project": project, "identifier": identifier}
            await records.update(conn, pipeline_table, keys, values)
            return await pipeline_of(conn, project, identifier)

    async def delete_pipeline(self, project: str, identifier: str) -> None:
        """Delete a pipeline; its runs stay as history. Refused while a schedule triggers it."""
        async with self.db.transaction() as conn:
            await pipeline_of(conn, project, identifier)
            used_by = await conn.scalar(
                sa.select(schedule_table.c.identifier).where(
                    schedule_table.c.project == project,
                    schedule_table.c.pipeline == identifier,
                )
            )
            if used_by:
                raise Conflict(f"pipeline {identifier!r} is triggered by schedule {used_by!r}")
            await records.delete(
                conn, pipeline_table, {"project": project, "identifier": identifier}
            )


def seal_pipeline_webhook(
    keyring: Keyring, project: str, values: Mapping[str, Any], stored: object
) -> dict[str, Any] | None:
    """A checked pipeline's webhook with its secret encrypted (`stored`: its stored one)."""
    context = webhook_context(project, "pipeline", values["identifier"])
    return seal_webhook(keyring, values.get("webhook"), stored, context)


async def pipeline_of(conn: AsyncConnection, project: str, identifier: str) -> Pipeline:
    """The pipeline, or NotFound (naming the project if it is the project that is missing)."""
    keys = {"project": project, "identifier": identifier}
    row = await records.fetch_one(conn, pipeline_table, keys)
    if row is None:
        await _project(conn, project)
        raise NotFound(f"no pipeline {identifier!r} in project {project!r}")
    return Pipeline.from_row(row)


async def project_jobs(conn: AsyncConnection, project: str) -> dict[str, dict[str, Any]]:
    """The project's jobs as a pipeline's check takes them: identifier -> {parameters}."""
    rows = await conn.execute(
        sa.select(job_table.c.identifier, job_table.c.parameters).where(
            job_table.c.project == project
        )
    )
    return {row.identifier: {"parameters": row.parameters} for row in rows}


async def pipeline_naming_job(conn: AsyncConnection, project: str, job: str) -> str | None:
    """A pipeline of the project with a node that runs `job`, if there is one."""
    rows = await conn.execute(
        sa.select(pipeline_table.c.identifier, pipeline_table.c.nodes)
        .where(pipeline_table.c.project == project)
        .order_by(pipeline_table.c.identifier)
    )
    for row in rows:
        if job in jobs_named(row.nodes):
            return str(row.identifier)
    return None


async def _project(conn: AsyncConnection, project: str) -> None:
    if await records.fetch_one(conn, project_table, {"identifier": project}) is None:
        raise NotFound(f"no project {project!r}")


def _body(data: object) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput("the body must be a JSON object")
    return dict(data)


async def check_schedule_pipeline(
    conn: AsyncConnection, project: str, values: Mapping[str, Any]
) -> dict[str, Any]:
    """A schedule of a pipeline must name an existing pipeline of its project and give it
    parameters it accepts (a pipeline's parameters are never secret: stored as given)."""
    try:
        pipeline = await pipeline_of(conn, project, values["pipeline"])
    except NotFound as exc:
        raise InvalidInput(str(exc)) from None
    resolve_parameters(parse_parameters(pipeline.parameters), values["parameters"])
    return dict(values)
