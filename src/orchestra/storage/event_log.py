"""The change log (table `event_log`): one row per change to a run, pipeline run, worker or
schedule, written in the transaction that makes the change; read after a cursor by the live
event stream (services/event_stream.py) and the notifications relay.

Writers call `append` once per transaction with every change it made: the changes of one
subject are coalesced into one row (its last status; a `*.created` stays one), and the rows go
in one executemany, with nothing read first. Where only run identifiers are known,
`append_for_runs` takes the project and status from the run's row in the same INSERT. The
PostgreSQL one-statement paths (a group of triggers, of reports, a dispatch claim) log in their
own statement with `LOG_RUNS` (a data-modifying WITH query).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import utcnow
from orchestra.storage import direct
from orchestra.storage.schema import event_log as log_table
from orchestra.storage.schema import pipeline_run as pipeline_run_table
from orchestra.storage.schema import run as run_table

RUN_CREATED = "run.created"
RUN_UPDATED = "run.updated"
PIPELINE_RUN_CREATED = "pipeline_run.created"
PIPELINE_RUN_UPDATED = "pipeline_run.updated"
WORKER_UPDATED = "worker.updated"
SCHEDULE_FIRED = "schedule.fired"
TYPES = (
    RUN_CREATED,
    RUN_UPDATED,
    PIPELINE_RUN_CREATED,
    PIPELINE_RUN_UPDATED,
    WORKER_UPDATED,
    SCHEDULE_FIRED,
)


class Change(NamedTuple):
    type: str
    project: str | None
    subject: str
    status: str | None = None


_INSERT = log_table.insert()
_COLUMNS = ("type", "project", "subject", "status", "date")


def coalesce(changes: Iterable[Change]) -> list[Change]:
    """One change per subject (and kind: run, pipeline run...), in the order of their first
    change, with the last status; a creation stays a creation. Schedules' firings are kept
    apart (each is an event of its own)."""
    kept: dict[tuple[str, str], Change] = {}
    fired: list[Change] = []
    for change in changes:
        if change.type == SCHEDULE_FIRED:
            fired.append(change)
            continue
        key = (change.type.split(".", 1)[0], change.subject)
        before = kept.get(key)
        if before is None:
            kept[key] = change
        else:
            created = before.type.endswith(".created")
            kept[key] = change._replace(type=before.type if created else change.type)
    return [*kept.values(), *fired]


async def append(
    conn: AsyncConnection, changes: Iterable[Change], date: datetime | None = None
) -> None:
    """Log the changes (coalesced) in the caller's transaction: one executemany."""
    rows = coalesce(changes)
    if not rows:
        return
    now = date or utcnow()
    await direct.execute(
        conn,
        _INSERT,
        [
            {
                "type": c.type,
                "project": c.project,
                "subject": c.subject,
                "status": c.status,
                "date": now,
            }
            for c in rows
        ],
    )


def _for_statement(table: sa.Table) -> Any:
    selected = sa.select(
        sa.bindparam("type", type_=sa.String()),
        table.c.project,
        table.c.identifier,
        table.c.status,
        sa.bindparam("date", type_=log_table.c.date.type),
    ).where(table.c.identifier.in_(sa.bindparam("subjects", expanding=True)))
    return _INSERT.from_select(list(_COLUMNS), selected)


_FOR_RUNS = _for_statement(run_table)
_FOR_PIPELINE_RUNS = _for_statement(pipeline_run_table)


async def append_for_runs(conn: AsyncConnection, type_: str, runs: Iterable[str]) -> None:
    """Log a change of each of these runs, its project and status read from its row by the
    INSERT itself (as the transaction sees it: call it after the change)."""
    await _append_for(conn, _FOR_RUNS, type_, runs)


async def append_for_pipeline_runs(
    conn: AsyncConnection, type_: str, pipeline_runs: Iterable[str]
) -> None:
    """The same for pipeline runs."""
    await _append_for(conn, _FOR_PIPELINE_RUNS, type_, pipeline_runs)


async def _append_for(
    conn: AsyncConnection, statement: Any, type_: str, subjects: Iterable[str]
) -> None:
    wanted = sorted(set(subjects))
    if wanted:
        await conn.execute(statement, {"type": type_, "date": utcnow(), "subjects": wanted})


def log_runs_sql(source: str, type_: str, date_parameter: str) -> str:
    """PostgreSQL: a WITH query logging a change of each run in `source` (a WITH query
    returning `identifier`, `project` and `status`), for a one-statement path."""
    return (
        f"INSERT INTO event_log (type, project, subject, status, date) "
        f"SELECT '{type_}', {source}.project, {source}.identifier, {source}.status, "
        f"CAST(:{date_parameter} AS TIMESTAMP WITH TIME ZONE) FROM {source}"
    )


_AFTER = (
    sa.select(log_table)
    .where(log_table.c.identifier > sa.bindparam("after"))
    .order_by(log_table.c.identifier)
    .limit(sa.bindparam("limit"))
)
_BOUNDS = sa.select(sa.func.min(log_table.c.identifier), sa.func.max(log_table.c.identifier))


async def read_after(conn: AsyncConnection, after: int, limit: int) -> list[dict[str, Any]]:
    """The rows after cursor `after`, in order, at most `limit`."""
    found = await conn.execute(_AFTER, {"after": after, "limit": limit})
    return [dict(row) for row in found.mappings()]


async def bounds(conn: AsyncConnection) -> tuple[int | None, int | None]:
    """The oldest and the newest identifier kept (None, None when empty)."""
    row = (await conn.execute(_BOUNDS)).one()
    return row[0], row[1]


async def prune(conn: AsyncConnection, before: datetime, keep_from: int | None) -> int:
    """Delete rows dated before `before`, keeping every row from identifier `keep_from` on
    (a reader's cursor); the number deleted."""
    condition = log_table.c.date < before
    if keep_from is not None:
        condition = sa.and_(condition, log_table.c.identifier < keep_from)
    result = await conn.execute(sa.delete(log_table).where(condition))
    return result.rowcount or 0
