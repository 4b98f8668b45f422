"""The dispatch pass's SQL, built once (storage/dispatch.py runs it).

SQLite reads the pending runs one (project, priority) level at a time, each read in the
dispatch index's own order up to a limit; PostgreSQL reads every level's oldest runs in one
statement (LATERAL), locking them as read. A claim is one guarded UPDATE for a pass's runs and
all their workers; on PostgreSQL it returns the runs' steps too, and while the head of the
queue is plain (no cap, no properties, no sandbox) the whole pass is one statement
(`plain_claim`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from orchestra.domain.models import Row, Run, RunStep
from orchestra.domain.statuses import RunStatus, run_sources_for
from orchestra.storage.event_log import RUN_UPDATED, log_runs_sql
from orchestra.storage.schema import event_log as event_log_table
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import run_step as step_table
from orchestra.storage.schema import worker as worker_table

# A claim moves a run to `running` from the statuses the transition table allows (pending).
(_CLAIMABLE,) = run_sources_for(RunStatus.RUNNING)


def pending_of(batch: int) -> Any:
    """A project's dispatchable pending runs of one priority, oldest first, with their job's
    properties and their own sandbox. One priority at a time: the order is then the dispatch
    index's own (status, project, priority, creation_date), read in order up to the limit
    instead of sorting every pending run. Built once per batch size and run with parameters
    (project, priority, now). SQLite's way; PostgreSQL reads every level at once (LEVEL_RUNS_OF)."""
    statement: Any = _PENDING_OF.get(batch)
    if statement is None:
        statement = (
            sa.select(
                run_table.c.identifier,
                run_table.c.job,
                run_table.c.creation_date,
                job_table.c.properties,
                _CAPPED,
                run_table.c.sandbox,
            )
            .join(
                job_table,
                sa.and_(
                    job_table.c.project == run_table.c.project,
                    job_table.c.identifier == run_table.c.job,
                ),
            )
            .join(project_table, project_table.c.identifier == run_table.c.project)
            .where(
                run_table.c.status == RunStatus.PENDING.value,
                run_table.c.project == sa.bindparam("b_project"),
                run_table.c.priority == sa.bindparam("b_priority"),
                job_table.c.is_enabled.is_(True),
                project_table.c.is_enabled.is_(True),
                sa.or_(
                    run_table.c.not_before.is_(None),
                    run_table.c.not_before <= sa.bindparam("b_now"),
                ),
            )
            .order_by(run_table.c.creation_date, run_table.c.identifier)
            .limit(batch)
        )
        _PENDING_OF[batch] = statement
    return statement


_PENDING_OF: dict[int, Any] = {}
_CAPPED = sa.or_(
    job_table.c.concurrency.is_not(None), project_table.c.concurrency.is_not(None)
).label("capped")
# The (project, priority) pairs of the pending runs, found by skipping along the dispatch index
# (status, project, priority, ...): one seek per pair, where a DISTINCT reads every pending run
# (two thousand of them, per pass, while a burst drains). Each step takes the first pair after
# the last one found; portable SQL (two scalar subqueries: SQLite has no LATERAL).
_NEXT_LEVEL = """(SELECT r.{column} FROM run AS r
        WHERE r.status = :pending AND (r.project, r.priority) > (l.project, l.priority)
        ORDER BY r.project, r.priority LIMIT 1)"""
_LEVELS = f"""WITH RECURSIVE l(project, priority) AS (
    SELECT * FROM (SELECT project, priority FROM run WHERE status = :pending
        ORDER BY project, priority LIMIT 1) AS first
    UNION ALL
    SELECT {_NEXT_LEVEL.format(column="project")}, {_NEXT_LEVEL.format(column="priority")}
    FROM l WHERE l.project IS NOT NULL
)
"""
PENDING_LEVELS = (
    sa.text(_LEVELS + "SELECT project, priority FROM l WHERE project IS NOT NULL")
    .bindparams(pending=RunStatus.PENDING.value)
    .columns(run_table.c.project, run_table.c.priority)
)
_JOB_CAPS = sa.select(job_table.c.project, job_table.c.identifier, job_table.c.concurrency).where(
    job_table.c.concurrency.is_not(None)
)
# A project's cap as a row shaped like a job's, with no job.
_PROJECT_CAPS_AS_JOB = sa.select(
    project_table.c.identifier,
    sa.cast(sa.null(), job_table.c.identifier.type),
    project_table.c.concurrency,
).where(project_table.c.concurrency.is_not(None))
# A level's (l.project, l.priority) dispatchable pending runs, oldest first (PostgreSQL).
_OF_LEVEL = """FROM run
    JOIN job ON job.project = run.project AND job.identifier = run.job
    JOIN project ON project.identifier = run.project
    WHERE run.status = :pending AND run.project = l.project AND run.priority = l.priority
        AND job.is_enabled AND project.is_enabled
        AND (run.not_before IS NULL OR run.not_before <= :now)
    ORDER BY run.creation_date, run.identifier
"""
# PostgreSQL: the levels and each level's oldest runs in one statement (LATERAL), the runs
# locked as read, skipping those locked elsewhere when `lock`: a round trip per level less.
_LEVEL_RUNS = (
    """SELECT l.project, l.priority, c.identifier, c.job, c.creation_date, c.properties,
    c.capped, c.sandbox
FROM l CROSS JOIN LATERAL (
    SELECT run.identifier, run.job, run.creation_date, job.properties,
        job.concurrency IS NOT NULL OR project.concurrency IS NOT NULL AS capped, run.sandbox
    """
    + _OF_LEVEL
    + """    LIMIT :batch{lock}
) AS c
WHERE l.project IS NOT NULL
ORDER BY l.project, l.priority DESC, c.creation_date, c.identifier"""
)
LEVEL_RUNS_OF = {
    lock: sa.text(
        _LEVELS + _LEVEL_RUNS.format(lock="\n    FOR UPDATE OF run SKIP LOCKED" if lock else "")
    )
    .bindparams(pending=RunStatus.PENDING.value)
    .columns(
        run_table.c.project,
        run_table.c.priority,
        run_table.c.identifier,
        run_table.c.job,
        run_table.c.creation_date,
        job_table.c.properties,
        sa.column("capped", sa.Boolean),
        run_table.c.sandbox,
    )
    for lock in (False, True)
}
CAPS = sa.union_all(_JOB_CAPS, _PROJECT_CAPS_AS_JOB)
# The same, locking what it reads (PostgreSQL), still in one statement: FOR UPDATE is not
# allowed on a UNION's parts, but is in a WITH query's.
_LOCKED_JOB_CAPS = _JOB_CAPS.with_for_update().cte("job_caps")
_LOCKED_PROJECT_CAPS = _PROJECT_CAPS_AS_JOB.with_for_update().cte("project_caps")
LOCKED_CAPS = sa.union_all(sa.select(_LOCKED_JOB_CAPS), sa.select(_LOCKED_PROJECT_CAPS))
RUNNING_COUNTS = (
    sa.select(run_table.c.project, run_table.c.job, sa.func.count())
    .where(run_table.c.status == RunStatus.RUNNING.value)
    .group_by(run_table.c.project, run_table.c.job)
)
RUN_KEYS = sa.select(run_table.c.identifier, run_table.c.project, run_table.c.job).where(
    run_table.c.identifier.in_(sa.bindparam("runs", expanding=True))
)
# A run goes to a worker only while it is pending and the worker enabled, approved and
# staying: the database, not the master's session, says so (a worker disabled a moment ago
# gets nothing).
# One statement claims a pass's runs for all their workers (`claim_of(count)`, built once per
# number of runs): run r<i> goes to worker w<i>. An `uncapped` claim (one made outside a
# transaction that read the caps) takes only runs whose job and project have no cap.
_CLAIMS: dict[tuple[int, bool], Any] = {}
_UNCAPPED = (
    ~sa.exists().where(
        job_table.c.project == run_table.c.project,
        job_table.c.identifier == run_table.c.job,
        job_table.c.concurrency.is_not(None),
    ),
    ~sa.exists().where(
        project_table.c.identifier == run_table.c.project,
        project_table.c.concurrency.is_not(None),
    ),
)


def claim_of(count: int, uncapped: bool = False) -> Any:
    statement = _CLAIMS.get((count, uncapped))
    if statement is None:
        runs: list[Any] = [sa.bindparam(f"r{i}") for i in range(count)]
        chosen = sa.case(
            *[(run_table.c.identifier == r, sa.bindparam(f"w{i}")) for i, r in enumerate(runs)]
        )
        statement = _CLAIMS[(count, uncapped)] = (
            run_table.update()
            .where(
                run_table.c.identifier.in_(runs),
                # The guard as an expression no index answers: the runs are then found by
                # their primary key. As a plain `status = 'pending'`, PostgreSQL, its
                # statistics taken before a burst, chose to walk every pending run of the
                # dispatch index (250 us a claim with two thousand pending).
                run_table.c.status.concat("") == _CLAIMABLE.value,
                sa.exists().where(
                    worker_table.c.identifier == chosen,
                    worker_table.c.is_enabled.is_(True),
                    worker_table.c.is_approved.is_(True),
                    worker_table.c.should_disconnect.is_(False),
                ),
                *(_UNCAPPED if uncapped else ()),
            )
            .values(
                status=RunStatus.RUNNING.value,
                worker=chosen,
                master=sa.bindparam("v_master"),
                assignment_date=sa.bindparam("v_assignment_date"),
                update_date=sa.bindparam("v_update_date"),
            )
            .returning(*run_table.c)
        )
    return statement


# PostgreSQL: the claim and the claimed runs' steps in one statement (the UPDATE as a WITH
# query, joined to the steps): a round trip less per dispatch pass.
_STEP_FIELDS = tuple(RunStep.__dataclass_fields__)
_CLAIMS_WITH_STEPS: dict[tuple[int, bool], Any] = {}
_PLAIN_CLAIM: Any = None  # built on first use (below)


def claim_with_steps_of(count: int, uncapped: bool = False) -> Any:
    statement = _CLAIMS_WITH_STEPS.get((count, uncapped))
    if statement is None:
        claimed = claim_of(count, uncapped).cte("claimed")
        # The change log's rows for the runs claimed (storage/event_log.py), in the statement.
        logged = (
            event_log_table.insert()
            .from_select(
                ["type", "project", "subject", "status", "date"],
                sa.select(
                    sa.literal(RUN_UPDATED),
                    claimed.c.project,
                    claimed.c.identifier,
                    claimed.c.status,
                    sa.bindparam("v_update_date"),
                ),
            )
            .cte("logged")
        )
        statement = _CLAIMS_WITH_STEPS[(count, uncapped)] = (
            sa.select(claimed, *(step_table.c[name].label(f"step_{name}") for name in _STEP_FIELDS))
            .select_from(claimed.outerjoin(step_table, step_table.c.run == claimed.c.identifier))
            .add_cte(logged)
        )
    return statement


# PostgreSQL, while the runs at the head of the queue are plain (no cap, no properties, no
# sandbox: any worker can take them, so which goes where needs no matching; a sandboxed run
# wants a worker with sandbox=true, and its JSON column holds 'null' or NULL when it has no
# sandbox), a whole dispatch pass is this
# one statement: the head of the queue read in dispatch order and locked (skipping what another
# master locked), its first :free runs claimed, the k-th for the k-th of :workers (the free
# executors, as the master's matching would fill them), and their steps returned. Should any
# of those first runs not be plain, nothing is claimed (`blocked` says so) and the pass is done
# the general way. The order is domain/dispatch.py's `rank`: priority, then each project's
# oldest in turn (the position within its level), then age; the k-th free executor is the k-th
# of domain/dispatch.py's `plain_order`.
_PLAIN_CLAIM_SQL = (
    _LEVELS
    + """, ranked AS (
    SELECT c.identifier, c.plain, row_number() OVER (
        ORDER BY l.priority DESC, c.position, c.creation_date, l.project, c.identifier) AS rank
    FROM l CROSS JOIN LATERAL (
        SELECT o.*, row_number() OVER (ORDER BY o.creation_date, o.identifier) AS position
        FROM (
            SELECT run.identifier, run.creation_date,
                job.concurrency IS NULL AND project.concurrency IS NULL
                    AND CAST(job.properties AS TEXT) = '{{}}'
                    AND COALESCE(CAST(run.sandbox AS TEXT), 'null') = 'null' AS plain
            """
    + _OF_LEVEL
    + """            LIMIT :free
            FOR UPDATE OF run SKIP LOCKED
        ) AS o
    ) AS c
    WHERE l.project IS NOT NULL
),
head AS (SELECT * FROM ranked WHERE rank <= :free),
claimed AS (
    UPDATE run SET
        status = :running,
        worker = (CAST(:workers AS VARCHAR[]))[head.rank],
        master = :master,
        assignment_date = :assigned,
        update_date = :updated
    FROM head
    -- The runs found by their primary key (an index condition), not by joining the whole
    -- table to `head`; and the guard written so that no index answers it (see claim_of).
    WHERE run.identifier = ANY(ARRAY(SELECT identifier FROM head))
        AND run.identifier = head.identifier
        AND run.status || '' = :pending
        AND NOT EXISTS (SELECT 1 FROM head WHERE NOT head.plain)
        AND EXISTS (
            SELECT 1 FROM worker
            WHERE worker.identifier = (CAST(:workers AS VARCHAR[]))[head.rank]
                AND worker.is_enabled AND worker.is_approved AND NOT worker.should_disconnect)
    RETURNING {returning}, head.rank AS claim_rank
),
-- The change log's rows for the runs claimed (storage/event_log.py).
logged AS ({logged})
SELECT info.blocked, info.found, claimed.*, {steps}
FROM (SELECT (SELECT count(*) FROM head WHERE NOT head.plain) AS blocked,
        (SELECT count(*) FROM ranked) AS found) AS info
LEFT JOIN (claimed LEFT JOIN run_step ON run_step.run = claimed.identifier) ON true
ORDER BY claimed.claim_rank, run_step.index"""
)


def runs_with_steps(rows: Sequence[Row]) -> dict[str, Run]:
    """Runs from rows of a run's columns and one of its steps' (prefixed `step_`) each."""
    found: dict[str, tuple[Row, list[RunStep]]] = {}
    for row in rows:
        _, steps = found.setdefault(row["identifier"], (row, []))
        if row["step_index"] is not None:
            steps.append(RunStep.from_row({f: row[f"step_{f}"] for f in _STEP_FIELDS}))
    return {
        identifier: Run.from_row(row, sorted(steps, key=lambda step: step.index))
        for identifier, (row, steps) in found.items()
    }


def plain_claim() -> Any:
    global _PLAIN_CLAIM
    if _PLAIN_CLAIM is None:
        # The columns are typed by position: each named in the order given to `columns`.
        steps = ", ".join(f'run_step."{name}" AS step_{name}' for name in _STEP_FIELDS)
        returning = ", ".join(f'run."{column.name}"' for column in run_table.c)
        _PLAIN_CLAIM = (
            sa.text(
                _PLAIN_CLAIM_SQL.format(
                    steps=steps,
                    returning=returning,
                    logged=log_runs_sql("claimed", RUN_UPDATED, "updated"),
                )
            )
            .bindparams(pending=_CLAIMABLE.value, running=RunStatus.RUNNING.value)
            .columns(
                sa.column("blocked", sa.Integer),
                sa.column("found", sa.Integer),
                *run_table.c,
                sa.column("claim_rank", sa.Integer),
                *(sa.column(f"step_{name}", step_table.c[name].type) for name in _STEP_FIELDS),
            )
        )
    return _PLAIN_CLAIM
