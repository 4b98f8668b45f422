"""Run, run step and run log queries."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import utcnow
from orchestra.domain.models import Run, RunStep
from orchestra.domain.pages import Listing
from orchestra.domain.statuses import (
    RunStatus,
    StepStatus,
    check_step_transition,
    run_sources_within,
)
from orchestra.errors import Conflict, NotFound
from orchestra.storage import direct, event_log, records
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import run_log as log_table
from orchestra.storage.schema import run_step as step_table

# The statements every run goes through, built once (storage/records.py says why).
_INSERT_RUN = run_table.insert()
_INSERT_STEPS = step_table.insert()
_STEPS_OF = (
    sa.select(step_table)
    .where(step_table.c.run.in_(sa.bindparam("runs", expanding=True)))
    .order_by(step_table.c.run, step_table.c.index)
)
LOG_BATCH = 64
LOG_BATCH_BYTES = 16 << 20  # and chunks starting within this many bytes, to bound memory
# The largest chunk the master stores; it bounds the index range a log read has to scan.
MAX_LOG_CHUNK = 1 << 20


async def insert_run(
    conn: AsyncConnection, values: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]
) -> Run:
    """Insert a run and its steps (in the caller's transaction, so never one without the other)
    and return the run as stored, built from what was written (no read-back)."""
    now = utcnow()
    written = {"creation_date": now, "update_date": now, **values}
    step_rows = _step_rows(values["identifier"], steps)
    # No savepoint: a failed insert fails the caller's whole transaction, which is what every
    # caller wants (nothing else is tried after it).
    try:
        await conn.execute(_INSERT_RUN, written)
    except IntegrityError as exc:
        raise Conflict("run already exists or refers to something missing") from exc
    if step_rows:
        await conn.execute(_INSERT_STEPS, step_rows)
    await event_log.append(conn, [_created(written)], now)
    return _as_stored(written, step_rows)


def _created(written: Mapping[str, Any]) -> event_log.Change:
    status = written.get("status", RunStatus.PENDING.value)
    identifier = written["identifier"]
    return event_log.Change(event_log.RUN_CREATED, written["project"], identifier, status)


async def missing_job(conn: AsyncConnection, project: str, job: str) -> NotFound:
    """The error for a job not found: a job exists only in its project (a foreign key), so
    the project is looked for only to say which is missing."""
    if await records.fetch_one(conn, project_table, {"identifier": project}) is None:
        return NotFound(f"no project {project!r}")
    return NotFound(f"no job {job!r} in project {project!r}")


def _as_stored(written: Mapping[str, Any], step_rows: Sequence[Mapping[str, Any]]) -> Run:
    """A new run as stored: what was written, and the columns' defaults for the rest."""
    row: dict[str, Any] = {c.name: None for c in run_table.c}
    row.update(priority=0, attempt=1)
    row.update(written)
    return Run.from_row(
        row,
        [
            RunStep.from_row({**s, "exit_code": None, "start_date": None, "completion_date": None})
            for s in step_rows
        ],
    )


def _step_rows(run: str, steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a new run's steps, all pending."""
    return [
        {
            "run": run,
            "index": index,
            "name": step["name"],
            "command": step["command"],
            "status": StepStatus.PENDING.value,
            "log_size": 0,
            "timeout": step.get("timeout"),
        }
        for index, step in enumerate(steps)
    ]


async def insert_runs(
    conn: AsyncConnection,
    runs: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    *,
    stored: bool = False,
) -> list[Run]:
    """Insert many runs and their steps: one statement for the runs, one for the steps (on
    PostgreSQL, one for both). The runs' values all have the same columns (they come from the
    same code). With `stored`, the
    runs as stored are returned (as insert_run's), else nothing is built."""
    if not runs:
        return []
    now = utcnow()
    written = [{"creation_date": now, "update_date": now, **v} for v, _ in runs]
    steps = [_step_rows(values["identifier"], run_steps) for values, run_steps in runs]
    step_rows = [row for rows in steps for row in rows]
    try:
        if conn.dialect.name == "postgresql":
            await _insert_in_one_statement(conn, written, step_rows)
        else:
            await direct.execute(conn, _INSERT_RUN, written)
            await direct.execute(conn, _INSERT_STEPS, step_rows)
            await event_log.append(conn, [_created(w) for w in written], now)
    except IntegrityError as exc:
        raise Conflict("a run already exists or refers to something missing") from exc
    if not stored:
        return []
    return [_as_stored(w, s) for w, s in zip(written, steps, strict=True)]


async def _insert_in_one_statement(
    conn: AsyncConnection, runs: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]]
) -> None:
    """PostgreSQL: the runs and their steps inserted by one statement, each table's rows given
    as one JSON array (json_populate_recordset reads it as the table's rows). Atomic on its
    own, so a caller needs no transaction around it; the text depends only on the columns,
    and is built once for each set of them. The runs' creation is logged by it too
    (storage/event_log.py)."""
    run_columns = tuple(runs[0])
    step_columns = tuple(steps[0]) if steps else ()
    statement = _INSERTS_IN_ONE.get((run_columns, step_columns))
    if statement is None:
        sql = _insert_from_json("run", ":runs", run_columns)
        sql += "\nRETURNING identifier, project, status"
        logged = event_log.log_runs_sql("runs", event_log.RUN_CREATED, "logged_date")
        sql = f"WITH runs AS ({sql}),\nlogged AS ({logged})\n"
        if steps:
            sql += _insert_from_json("run_step", ":steps", step_columns)
        else:
            sql += "SELECT 1"
        statement = _INSERTS_IN_ONE[(run_columns, step_columns)] = sa.text(sql)
    parameters = {"runs": _json_rows(runs), "logged_date": runs[0]["creation_date"]}
    if steps:
        parameters["steps"] = _json_rows(steps)
    await conn.execute(statement, parameters)


def _insert_from_json(table: str, rows: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{name}"' for name in columns)
    return (
        f"INSERT INTO {table} ({names})\n"
        f"SELECT {names} FROM json_populate_recordset(NULL::{table}, CAST({rows} AS json))"
    )


_INSERTS_IN_ONE: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(rows, default=_json_date, separators=(",", ":"))


def _json_date(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


async def get_run(conn: AsyncConnection, identifier: str, project: str | None = None) -> Run | None:
    keys = (
        {"identifier": identifier}
        if project is None
        else {"identifier": identifier, "project": project}
    )
    row = await records.fetch_one(conn, run_table, keys)
    if row is None:
        return None
    return Run.from_row(row, await get_steps(conn, identifier))


async def get_steps(conn: AsyncConnection, run: str) -> list[RunStep]:
    query = sa.select(step_table).where(step_table.c.run == run).order_by(step_table.c.index)
    return [RunStep.from_row(r) for r in (await conn.execute(query)).mappings()]


# What applying a report reads of its run (not the parameters, source, dates... of a whole row:
# each column read is a value converted).
_REPORTED_COLUMNS = (
    "identifier",
    "worker",
    "status",
    "event_sequence",
    "log_size",
    "start_date",
    "retry",
    "results",  # a step's results are merged into them (services/report_plan.py)
    "project",  # the labels of the metrics of a run that ends (orchestra/metrics.py)
    "job",
    "pipeline_run",  # a run of a pipeline marks it when it ends (services/pipeline_marks.py)
)
# The run's last step's index, read with its row: a report that ends the run and carries every
# one of its steps' changes is checked against them alone, with no second statement for the
# steps (services/report_applier.py).
_LAST_STEP = (
    sa.select(sa.func.max(step_table.c.index))
    .where(step_table.c.run == run_table.c.identifier)
    .scalar_subquery()
    .label("last_step")
)
_LOCK_RUNS = (
    sa.select(*(run_table.c[name] for name in _REPORTED_COLUMNS), _LAST_STEP)
    .where(run_table.c.identifier.in_(sa.bindparam("runs", expanding=True)))
    .order_by(run_table.c.identifier)  # locks taken in one order by everyone: no deadlock
)


_LOCK_RUNS_FOR_UPDATE = _LOCK_RUNS.with_for_update(of=run_table)


async def lock_runs(conn: AsyncConnection, runs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """These runs' rows by identifier (the columns a report is checked against: identifier,
    worker, status, event_sequence, log_size, start_date, retry... and `last_step`, the index
    of its last step), locked until the
    transaction ends on PostgreSQL (on SQLite the write transaction holds the database)."""
    identifiers = list(runs)
    if not identifiers:
        return {}
    query = _LOCK_RUNS_FOR_UPDATE if conn.dialect.name == "postgresql" else _LOCK_RUNS
    found = await direct.rows(conn, query, {"runs": identifiers})
    return {row["identifier"]: row for row in found}


_SKIP_PENDING = (
    step_table.update()
    .where(
        step_table.c.run.in_(sa.bindparam("runs", expanding=True)),
        step_table.c.status == StepStatus.PENDING.value,
    )
    .values(status=sa.bindparam("to"))
)


async def skip_pending_steps_of(
    conn: AsyncConnection, runs: Sequence[str], status: StepStatus
) -> None:
    """Every still pending step of these runs to `status` (runs that ended before them)."""
    check_step_transition(StepStatus.PENDING, status)
    if runs:
        await direct.execute(conn, _SKIP_PENDING, [{"runs": list(runs), "to": status.value}])


async def steps_of(conn: AsyncConnection, runs: Iterable[str]) -> dict[str, list[RunStep]]:
    identifiers = list(runs)
    result: dict[str, list[RunStep]] = {r: [] for r in identifiers}
    if not identifiers:
        return result
    for row in await direct.rows(conn, _STEPS_OF, {"runs": identifiers}):
        result[row["run"]].append(RunStep.from_row(row))
    return result


async def page_runs(
    conn: AsyncConnection,
    filters: Mapping[str, Any],
    cursor: str | None,
    limit: int | None,
) -> Listing[Run]:
    """Runs newest first, filtered by equality on project, job, status or worker."""
    found = await records.page_newest(conn, run_table, filters, cursor, limit)
    steps = await steps_of(conn, [r["identifier"] for r in found.items])
    return found.map(lambda r: Run.from_row(r, steps[r["identifier"]]))


async def set_run_status(
    conn: AsyncConnection,
    identifier: str,
    target: RunStatus,
    values: Mapping[str, Any] | None = None,
    *,
    only_from: Iterable[RunStatus] | None = None,
) -> bool:
    """Move a run to `target` only from a status the transition table allows (narrowed to
    `only_from` when given): a guarded, atomic update; False if the run was elsewhere."""
    sources = run_sources_within(target, None if only_from is None else frozenset(only_from))
    row = {"status": target.value, "update_date": utcnow(), **(values or {})}
    guard = ("status", sorted(s.value for s in sources))
    keys = {"identifier": identifier}
    if await records.update_where(conn, run_table, keys, row, guard) != 1:
        return False
    await event_log.append_for_runs(conn, event_log.RUN_UPDATED, [identifier])
    return True


async def end_running_steps(
    conn: AsyncConnection, run: str, status: StepStatus, now: datetime
) -> None:
    check_step_transition(StepStatus.RUNNING, status)
    keys = {"run": run, "status": StepStatus.RUNNING.value}
    await records.update_where(
        conn, step_table, keys, {"status": status.value, "completion_date": now}
    )


async def skip_pending_steps(conn: AsyncConnection, run: str, status: StepStatus) -> None:
    await skip_pending_steps_of(conn, [run], status)


async def append_log(
    conn: AsyncConnection,
    run: str,
    step_index: int,
    offset: int,
    data: bytes,
    date: datetime | None = None,
) -> None:
    """Store a chunk of a run's output; `date`: when it was read from its step (its lines'
    timestamps, storage/log_times.py)."""
    await conn.execute(
        log_table.insert().values(
            run=run, offset=offset, step_index=step_index, data=data, date=date
        )
    )


async def read_log_chunks(
    conn: AsyncConnection, run: str, offset: int, step_index: int | None = None
) -> list[tuple[int, bytes]]:
    """Up to LOG_BATCH chunks holding bytes at or after `offset`, in order (those starting
    within LOG_BATCH_BYTES of it)."""
    end = log_table.c.offset + sa.func.length(log_table.c.data)
    query = sa.select(log_table.c.offset, log_table.c.data).where(
        log_table.c.run == run,
        log_table.c.offset > offset - MAX_LOG_CHUNK,
        log_table.c.offset < offset + LOG_BATCH_BYTES,
        end > offset,
    )
    if step_index is not None:
        query = query.where(log_table.c.step_index == step_index)
    query = query.order_by(log_table.c.offset).limit(LOG_BATCH)
    return [(int(r.offset), bytes(r.data)) for r in await conn.execute(query)]


async def step_log_start(conn: AsyncConnection, run: str, step_index: int) -> int | None:
    start = await conn.scalar(
        sa.select(sa.func.min(log_table.c.offset)).where(
            log_table.c.run == run, log_table.c.step_index == step_index
        )
    )
    return None if start is None else int(start)
