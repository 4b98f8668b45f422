"""Runs from the users' side: trigger, list, show, cancel, abort, and read or follow logs."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain import controls
from orchestra.domain.controls import Retry
from orchestra.domain.identifiers import check_identifier
from orchestra.domain.matching import required_properties
from orchestra.domain.models import Job, Row, Run
from orchestra.domain.pages import Listing
from orchestra.domain.parameters import resolve_parameters
from orchestra.domain.statuses import RunStatus, StepStatus
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services import pipeline_marks
from orchestra.services.events import Events
from orchestra.services.keyring import Keyring
from orchestra.services.parameter_secrets import seal_run_values
from orchestra.services.run_waiting import unmatched_warning, waiting_reason
from orchestra.services.triggers import TriggerQueue
from orchestra.storage import event_log, records
from orchestra.storage import runs as run_storage
from orchestra.storage.artifacts import with_artifacts
from orchestra.storage.engine import Database
from orchestra.storage.event_log import RUN_UPDATED
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import run as run_table

FOLLOW_POLL_SECONDS = 1.0
FORCEABLE = ("failed", "aborted", "exception")


class RunService:
    def __init__(
        self, db: Database, clock: Clock, events: Events, keyring: Keyring, pending_expiry: float
    ) -> None:
        self.db = db
        self.keyring = keyring  # secret parameters' values are stored encrypted
        self.clock = clock
        self.events = events
        self.pending_expiry = pending_expiry
        self._matched: dict[str, float] = {}
        self._triggers = TriggerQueue(db, self.pending_run, lambda: self.events.publish("dispatch"))

    async def trigger(
        self,
        project: str,
        job: str,
        parameters: object,
        source: Mapping[str, Any],
        priority: object = None,
    ) -> Run:
        """Create a pending run holding its own copy of the job's steps, committed when this
        returns; concurrent triggers share a transaction (services/triggers.py)."""
        return await self._triggers.trigger(project, job, parameters, source, priority)

    async def trigger_in(
        self,
        conn: AsyncConnection,
        project: str,
        job: str,
        parameters: object,
        source: Mapping[str, Any],
        priority: object = None,
    ) -> Run:
        values, steps = await self.pending_run(conn, project, job, parameters, source, priority)
        return await run_storage.insert_run(conn, values, steps)

    async def pending_run(
        self,
        conn: AsyncConnection,
        project: str,
        job: str,
        parameters: object,
        source: Mapping[str, Any],
        priority: object = None,
        *,
        jobs: dict[tuple[str, str], Row | None] | None = None,
        warnings: dict[str, str | None] | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The columns and steps of a new pending run of `project`/`job` (NotFound when there
        is no such job, InvalidInput when the parameters do not fit). `jobs` and `warnings`
        keep the job rows and warnings read, for a caller preparing many runs in one
        transaction."""
        key = (project, job)
        if jobs is not None and key in jobs:
            row = jobs[key]
        else:
            row = await records.fetch_one(conn, job_table, {"project": project, "identifier": job})
            if jobs is not None:
                jobs[key] = row
        if row is None:
            raise await run_storage.missing_job(conn, project, job)
        return await self.pending_of_job(conn, row, parameters, source, priority, warnings=warnings)

    async def pending_of_job(
        self,
        conn: AsyncConnection,
        row: Row,
        parameters: object,
        source: Mapping[str, Any],
        priority: object = None,
        *,
        warnings: dict[str, str | None] | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The columns of a new pending run of the job in `row`, and its steps (InvalidInput
        when the parameters do not fit the job). `warnings` keeps the "no matching worker"
        answers (either way) for a caller creating many runs in one transaction."""
        definition = Job.from_row(row)
        values = resolve_parameters(definition.parameters, parameters)
        values = seal_run_values(self.keyring, definition.parameters, parameters, values)
        now = self.clock.now()
        required = required_properties(definition.properties, definition.sandbox)
        key = json.dumps(required, sort_keys=True, default=str)
        if warnings is not None and key in warnings:
            warning = warnings[key]
        else:
            warning = await unmatched_warning(conn, required, self._matched)
            if warnings is not None:
                warnings[key] = warning
        return self._pending(
            {
                "project": definition.project,
                "job": definition.identifier,
                "parameters": values,
                "source": dict(source),
                "workspace": definition.workspace,
                "lease": definition.lease,
                "timeout": definition.timeout,
                "retry": definition.retry,
                "priority": definition.priority
                if priority is None
                else controls.priority(priority),
                "expiry_date": now + timedelta(seconds=definition.expiry or self.pending_expiry),
                "attempt": 1,
                "secret_parameters": [p.key for p in definition.parameters if p.secret] or None,
                "warning": warning,
                "sandbox": definition.sandbox,
                "limits": definition.limits,
                "environment": definition.environment,
                "artifact_rules": definition.artifacts,
            },
            [s.to_dict() for s in definition.steps],
        )

    async def retry_in(self, conn: AsyncConnection, original: Run, retry: Retry) -> Run:
        """A new run repeating `original` (its own steps, parameters and controls), linked to
        it, waiting out the backoff delay before it may start."""
        now = self.clock.now()
        attempt = original.attempt + 1
        expiry = (original.expiry_date - original.creation_date) if original.expiry_date else None
        return await self._insert_pending(
            conn,
            {
                "project": original.project,
                "job": original.job,
                "parameters": original.parameters,
                "source": original.source,
                "workspace": original.workspace,
                "lease": original.lease,
                "timeout": original.timeout,
                "retry": original.retry,
                "priority": original.priority,
                "not_before": now + retry.delay_before(attempt),
                "expiry_date": now + (expiry or timedelta(seconds=self.pending_expiry)),
                "attempt": attempt,
                "retry_of": original.identifier,
                "secret_parameters": original.secret_parameters,
                "sandbox": original.sandbox,
                "limits": original.limits,
                "environment": original.environment,
                "artifact_rules": original.artifact_rules,
                "pipeline_run": original.pipeline_run,
                "pipeline_node": original.pipeline_node,
            },
            [{"name": s.name, "command": s.command, "timeout": s.timeout} for s in original.steps],
        )

    async def _insert_pending(
        self, conn: AsyncConnection, values: Mapping[str, Any], steps: list[dict[str, Any]]
    ) -> Run:
        return await run_storage.insert_run(conn, *self._pending(values, steps))

    @staticmethod
    def _pending(
        values: Mapping[str, Any], steps: list[dict[str, Any]]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return {
            **values,
            "identifier": str(uuid.uuid4()),
            "worker": None,
            "status": RunStatus.PENDING.value,
            "should_cancel": False,
            "should_abort": False,
            "event_sequence": 0,
            "log_size": 0,
        }, steps

    async def list_runs(
        self,
        project: str | None,
        *,
        job: str | None = None,
        status: str | None = None,
        worker: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Listing[Run]:
        if status is not None and status not in RunStatus.__members__.values():
            raise InvalidInput(f"unknown status {status!r}")
        for value, what in ((job, "job"), (worker, "worker")):
            if value is not None:
                check_identifier(value, what)
        async with self.db.read() as conn:
            filters = {"project": project, "job": job, "status": status, "worker": worker}
            # A run's project exists (its runs go with it): only an empty page, or a bad
            # cursor (which a missing project outranks), needs to look the project up.
            try:
                found = await run_storage.page_runs(conn, filters, cursor, limit)
            except InvalidInput:
                if project is not None:
                    await _project_exists(conn, project)
                raise
            if project is not None and not found.items:
                await _project_exists(conn, project)
            runs = await with_artifacts(conn, found.items)
            return Listing(runs, found.next_cursor, found.previous_cursor)

    async def latest_per_job(
        self, project: str, jobs: list[str], count: int
    ) -> dict[str, list[Run]]:
        """The newest `count` runs of each job (one index range each), for status grids."""
        result: dict[str, list[Run]] = {}
        async with self.db.read() as conn:
            for job in jobs:
                filters = {"project": project, "job": job}
                result[job], _ = await run_storage.page_runs(conn, filters, None, count)
        return result

    async def get_run(self, project: str, identifier: str) -> Run:
        """A run; a pending one says why it is still waiting."""
        async with self.db.read() as conn:
            run = await self._run(conn, project, identifier)
            if run.status is RunStatus.PENDING:
                run = replace(run, waiting_reason=await waiting_reason(conn, run))
            return (await with_artifacts(conn, [run]))[0]

    async def _run(self, conn: AsyncConnection, project: str, identifier: str) -> Run:
        run = await run_storage.get_run(conn, identifier, project)
        if run is None:
            raise NotFound(f"no run {identifier!r} in project {project!r}")
        return run

    async def cancel(self, project: str, identifier: str) -> Run:
        """Cancel a pending run: it becomes `cancelled` and never starts."""
        async with self.db.transaction() as conn:
            run = await self._run(conn, project, identifier)
            if run.status is not RunStatus.PENDING:
                hint = " (abort it instead)" if run.status is RunStatus.RUNNING else ""
                raise Conflict(
                    f"only a pending run can be cancelled; this one is {run.status}{hint}"
                )
            now = self.clock.now()
            moved = await run_storage.set_run_status(
                conn,
                identifier,
                RunStatus.CANCELLED,
                {"should_cancel": True, "completion_date": now, "reason": "cancelled"},
            )
            if not moved:
                raise Conflict("the run changed while cancelling it; look again")
            await run_storage.skip_pending_steps(conn, identifier, StepStatus.SKIPPED)
            marked = await pipeline_marks.runs_ended(conn, [identifier], now)
            run = await self._run(conn, project, identifier)
        self.events.publish(f"run:{identifier}")
        if marked:
            pipeline_marks.advance_soon(self.events)
        return run

    async def abort(self, project: str, identifier: str) -> Run:
        """Ask for a running run to be aborted; its worker stops it and reports `aborted`."""
        async with self.db.transaction() as conn:
            run = await self._run(conn, project, identifier)
            if run.status is RunStatus.PENDING:
                raise Conflict("a pending run cannot be aborted; cancel it")
            if run.status is not RunStatus.RUNNING:
                raise Conflict(f"the run is already {run.status}")
            await records.update(
                conn,
                run_table,
                {"identifier": identifier},
                {"should_abort": True},
                where=run_table.c.status == RunStatus.RUNNING.value,
            )
            await event_log.append(
                conn, [event_log.Change(RUN_UPDATED, project, identifier, "running")]
            )
            run = await self._run(conn, project, identifier)
        self.events.publish("control")
        return run

    async def force(
        self, project: str, identifier: str, status: object, reason: object, user: str
    ) -> Run:
        """The last step of an escalating stop: when the worker never answers (gone,
        partitioned), an operator ends a running run with a final status and a reason; the
        record says who. Whatever the worker reports later is refused and kept aside."""
        if status not in FORCEABLE:
            raise InvalidInput(f"status must be one of {', '.join(FORCEABLE)}")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("a reason is required to force a run's status")
        text = f"forced by {user}: {' '.join(reason.split())[:1000]}"
        async with self.db.transaction() as conn:
            run = await self._run(conn, project, identifier)
            if run.status is RunStatus.PENDING:
                raise Conflict("a pending run is cancelled, not forced")
            if run.status is not RunStatus.RUNNING:
                raise Conflict(f"the run is already {run.status}")
            now = self.clock.now()
            moved = await run_storage.set_run_status(
                conn,
                identifier,
                RunStatus(status),
                {"completion_date": now, "reason": text, "forced_by": user, "should_abort": True},
                only_from=[RunStatus.RUNNING],
            )
            if not moved:
                raise Conflict("the run changed while forcing it; look again")
            step_status = StepStatus.ABORTED if status == "aborted" else StepStatus.EXCEPTION
            await run_storage.end_running_steps(conn, identifier, step_status, now)
            await run_storage.skip_pending_steps(conn, identifier, StepStatus.SKIPPED)
            marked = await pipeline_marks.runs_ended(conn, [identifier], now)
            run = await self._run(conn, project, identifier)
        self.events.publish(f"run:{identifier}")
        self.events.publish("control")
        if marked:
            pipeline_marks.advance_soon(self.events)
        return run

    async def read_log(
        self, project: str, identifier: str, offset: int = 0, step: int | None = None
    ) -> AsyncIterator[bytes]:
        """The log (or one step's) from byte `offset`, as it is stored now."""
        start = await self.log_start(project, identifier, offset, step)
        return self._chunks(identifier, start, step, follow=False)

    async def follow_log(
        self, project: str, identifier: str, offset: int = 0, step: int | None = None
    ) -> AsyncIterator[bytes]:
        """The log from `offset`, then new output as it arrives, until the run ends."""
        start = await self.log_start(project, identifier, offset, step)
        return self._chunks(identifier, start, step, follow=True)

    async def log_start(self, project: str, identifier: str, offset: int, step: int | None) -> int:
        """Where the log (or one step's) read from byte `offset` starts in the run's log; a
        NotFound for no such run or step."""
        if offset < 0:
            raise InvalidInput("offset must not be negative")
        async with self.db.read() as conn:
            run = await self._run(conn, project, identifier)
            if step is None:
                return offset
            if not 0 <= step < len(run.steps):
                raise NotFound(f"no step {step} in run {identifier!r}")
            first = await run_storage.step_log_start(conn, identifier, step)
        return (first or 0) + offset

    async def _chunks(
        self, identifier: str, offset: int, step: int | None, *, follow: bool
    ) -> AsyncIterator[bytes]:
        while True:
            async with self.db.read() as conn:
                # Status first: output is stored before (or with) the final status, so a run
                # seen final here has all its chunks visible to the read that follows.
                finished = True
                if follow:
                    run = await run_storage.get_run(conn, identifier)
                    finished = run is None or run.status.is_final
                chunks = await run_storage.read_log_chunks(conn, identifier, offset, step)
            for chunk_offset, data in chunks:
                yield data[max(0, offset - chunk_offset) :]
                offset = chunk_offset + len(data)
            if chunks:
                continue
            if not follow or finished:
                return
            await self.events.wait(f"run:{identifier}", FOLLOW_POLL_SECONDS)


async def _project_exists(conn: AsyncConnection, project: str) -> None:
    if await records.fetch_one(conn, project_table, {"identifier": project}) is None:
        raise NotFound(f"no project {project!r}")
