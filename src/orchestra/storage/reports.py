"""Workers' reports applied by one PostgreSQL statement (services/report_applier.py's fast path).

A report whose run is where the worker says it is (running, on this worker, its last event the
one before the report's first) changes the run's row and its steps' rows in ways known without
reading them first. One statement with data-modifying WITH queries applies a group of such
reports: each run's row is updated only under that guard, and its steps only if its row was
(they refer to the run update's RETURNING). It is one round trip where the transaction took
five (BEGIN, the rows read and locked, the steps, the runs, COMMIT), and atomic on its own. A run
whose guard fails is not in what the statement returns, and nothing of its report was written:
the caller applies it the general way (a resent event, a run given up on, a retry policy).
The runs changed are logged in the change log (storage/event_log.py) by the same statement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.results import MAX_RESULTS_BYTES
from orchestra.domain.statuses import RunStatus, StepStatus, step_sources_for
from orchestra.storage import event_log


@dataclass(frozen=True)
class RunChange:
    """What a report does to its run's row, and the guard it holds under."""

    identifier: str
    worker: str
    expected: int  # the run's event_sequence before the report
    last_sequence: int  # after it
    started: datetime | None  # the first step's start, kept if the run has one already
    status: str | None  # the run's end, if the report ends it
    completion_date: datetime | None
    reason: str | None
    # A report that ends its run carries every step's change up to this index: the run is
    # updated only if that is its last step (the end was checked against them alone).
    last_step: int | None = None
    # The report's steps' results, merged into the run's (theirs replacing its keys), or None.
    results: Mapping[str, str] | None = None


@dataclass(frozen=True)
class StepChange:
    """A step's new columns; `from_pending`: only while it is still pending (a start alone),
    otherwise while pending or running (an end)."""

    run: str
    index: int
    status: str
    start_date: datetime | None
    exit_code: int | None
    completion_date: datetime | None
    from_pending: bool


async def apply(
    conn: AsyncConnection,
    runs: Sequence[RunChange],
    steps: Sequence[StepChange],
    skip_pending: Sequence[str],
    now: datetime,
) -> dict[str, Applied]:
    """Apply the changes in one statement; the runs whose guard held (all of their changes
    were made; of the others, none), with their project, job and start."""
    if not runs:
        return {}
    parameters: dict[str, Any] = {"now": now, "skipped": list(skip_pending)}
    for name, _ in _RUN_COLUMNS:
        parameters[f"r_{name}"] = [getattr(run, name) for run in runs]
    parameters["r_results"] = [
        None if run.results is None else json.dumps(run.results) for run in runs
    ]
    for name, _ in _STEP_COLUMNS:
        parameters[f"s_{name}"] = [getattr(step, name) for step in steps]
    result = await conn.execute(_APPLY, parameters)
    return {row[0]: Applied(row[1], row[2], row[3]) for row in result}


@dataclass(frozen=True)
class Applied:
    """What the statement returns of a run it changed (the labels of a run's end's metrics)."""

    project: str
    job: str
    start_date: datetime | None


_RUN_COLUMNS = (
    ("identifier", "VARCHAR"),
    ("worker", "VARCHAR"),
    ("expected", "INTEGER"),
    ("last_sequence", "INTEGER"),
    ("started", "TIMESTAMP WITH TIME ZONE"),
    ("status", "VARCHAR"),
    ("completion_date", "TIMESTAMP WITH TIME ZONE"),
    ("reason", "VARCHAR"),
    ("last_step", "INTEGER"),
)
# Given as JSON text (run.results merged with it: _MERGED_RESULTS).
_RESULT_COLUMNS = (("results", "VARCHAR"),)
_STEP_COLUMNS = (
    ("run", "VARCHAR"),
    ("index", "INTEGER"),
    ("status", "VARCHAR"),
    ("start_date", "TIMESTAMP WITH TIME ZONE"),
    ("exit_code", "INTEGER"),
    ("completion_date", "TIMESTAMP WITH TIME ZONE"),
    ("from_pending", "BOOLEAN"),
)


def _rows_of(prefix: str, columns: Sequence[tuple[str, str]]) -> str:
    """The changes as rows: one array parameter per column, unnested side by side. The text
    is the same whatever the number of rows, so it is parsed once (and prepared, by psycopg,
    once it has been used a few times on a connection)."""
    arrays = ", ".join(f"CAST(:{prefix}{name} AS {sql_type}[])" for name, sql_type in columns)
    names = ", ".join(f'"{name}"' for name, _ in columns)
    return f"SELECT * FROM unnest({arrays}) AS given({names})"


# The statuses the statement's guards allow, from domain/statuses.py's transition table: a
# report applies to a running run; a step starts from pending (`from_pending`), and ends from
# pending or running (its start in the same report); the steps a failed run never started are
# skipped from pending.
_REPORTED_RUN = RunStatus.RUNNING.value
(_STARTED_FROM,) = (s.value for s in step_sources_for(StepStatus.RUNNING))
_ENDED_FROM = StepStatus.RUNNING.value
_SKIPPED = StepStatus.SKIPPED.value
# A run's results with a report's merged in (a key of the report's replacing the run's), and
# their size counted as domain/results.py counts it; the run's row is updated only within the
# limit (past it, the transaction refuses the report).
_MERGED_RESULTS = """(CASE WHEN json_typeof(run.results) = 'object'
        THEN CAST(run.results AS JSONB) ELSE CAST('{}' AS JSONB) END
    || CAST(reported.results AS JSONB))"""
_RESULTS_SIZE = f"""(SELECT COALESCE(sum(octet_length(key) + octet_length(value) + 2), 0)
    FROM jsonb_each_text({_MERGED_RESULTS}))"""

_APPLY = sa.text(
    f"""WITH reported AS ({_rows_of("r_", _RUN_COLUMNS + _RESULT_COLUMNS)}),
applied AS (
    UPDATE run SET
        event_sequence = reported.last_sequence,
        start_date = COALESCE(run.start_date, reported.started),
        status = COALESCE(reported.status, run.status),
        completion_date = COALESCE(reported.completion_date, run.completion_date),
        reason = CASE WHEN reported.status IS NULL THEN run.reason ELSE reported.reason END,
        results = CASE WHEN reported.results IS NULL THEN run.results
            ELSE CAST({_MERGED_RESULTS} AS JSON) END,
        update_date = CAST(:now AS TIMESTAMP WITH TIME ZONE)
    FROM reported
    WHERE run.identifier = reported.identifier
        AND run.worker = reported.worker
        AND run.status = '{_REPORTED_RUN}'
        AND run.event_sequence = reported.expected
        -- A run ending with a retry policy is retried in the transaction (a JSON null, or
        -- none at all, is no policy).
        AND (reported.status IS NULL OR COALESCE(json_typeof(run.retry), 'null') = 'null')
        AND (reported.results IS NULL OR {_RESULTS_SIZE} <= {MAX_RESULTS_BYTES})
        -- A run's end applies here only if the report carried every one of its steps' changes
        -- (it was checked against them), and only for a run of no pipeline (its end marks the
        -- pipeline run, in the transaction).
        AND (reported.status IS NULL OR (
            run.pipeline_run IS NULL
            AND reported.last_step IS NOT NULL
            AND NOT EXISTS (
                SELECT 1 FROM run_step AS later
                WHERE later.run = run.identifier AND later.index > reported.last_step
            )))
    RETURNING run.identifier, reported.status AS ended, run.project, run.status, run.job,
        run.start_date
),
-- The change log's rows (storage/event_log.py), in the same statement.
logged AS ({event_log.log_runs_sql("applied", event_log.RUN_UPDATED, "now")}),
stepped AS ({_rows_of("s_", _STEP_COLUMNS)}),
steps AS (
    UPDATE run_step SET
        status = stepped.status,
        start_date = COALESCE(stepped.start_date, run_step.start_date),
        exit_code = COALESCE(stepped.exit_code, run_step.exit_code),
        completion_date = COALESCE(stepped.completion_date, run_step.completion_date)
    FROM stepped
    WHERE run_step.run = stepped.run
        AND run_step.index = stepped.index
        AND run_step.run IN (SELECT identifier FROM applied)
        AND (run_step.status = '{_STARTED_FROM}'
            OR (NOT stepped.from_pending AND run_step.status = '{_ENDED_FROM}'))
),
skipped AS (
    UPDATE run_step SET status = '{_SKIPPED}'
    WHERE run_step.run = ANY(CAST(:skipped AS VARCHAR[]))
        AND run_step.run IN (SELECT identifier FROM applied)
        AND run_step.status = '{_STARTED_FROM}'
        -- A row may not be changed twice in one statement: steps updated by `steps` are
        -- not skipped (they were pending when the statement began).
        AND NOT EXISTS (
            SELECT 1 FROM stepped
            WHERE stepped.run = run_step.run AND stepped.index = run_step.index
        )
)
SELECT identifier, project, job, start_date FROM applied"""
)
