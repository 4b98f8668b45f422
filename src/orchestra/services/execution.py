"""Runs from the master's side: worker registration, assignment, worker reports, leases.

Every change here is a guarded update in one transaction, so that two masters (or a master that
was paused and woke up late) can never both win: a run is claimed only while it is pending, a
report is applied only when its sequence is the next one, and a run given up on stays given up.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock, utcnow
from orchestra.domain.controls import retry_from_row
from orchestra.domain.models import Row, Run, RunStep
from orchestra.domain.statuses import RunStatus, StepStatus
from orchestra.errors import Forbidden, ProtocolError
from orchestra.protocol import messages as m
from orchestra.services.events import Events
from orchestra.services.groups import GroupCommit, Waiting
from orchestra.services.runs import RunService
from orchestra.storage import direct, records
from orchestra.storage import reports as report_storage
from orchestra.storage import runs as run_storage
from orchestra.storage.engine import Database
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import run_step as step_table
from orchestra.storage.schema import worker as worker_table

log = logging.getLogger(__name__)
DISPATCH_BATCH = 200
REPORT_GROUP_MAX = 32  # reports applied in one transaction at most
# A report carrying more output than this is applied in a transaction of its own: a group's
# transaction stays short (it holds SQLite's write lock), and megabytes gain nothing by company.
REPORT_GROUP_BYTES = 64 << 10
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_INSERT_WORKER = worker_table.insert()


@dataclass(frozen=True)
class Candidate:
    """A pending run that may be dispatched now, with what matching needs."""

    identifier: str
    properties: dict[str, Any]
    project: str = ""
    job: str = ""
    capped: bool = False  # its job or project has a concurrency cap


@dataclass
class Caps:
    """Concurrency caps and the running runs that count against them."""

    job_cap: dict[tuple[str, str], int]
    project_cap: dict[str, int]
    job_running: dict[tuple[str, str], int]
    project_running: dict[str, int]

    @classmethod
    def none(cls) -> Caps:
        return cls({}, {}, {}, {})

    def copy(self) -> Caps:
        return Caps(
            self.job_cap, self.project_cap, dict(self.job_running), dict(self.project_running)
        )

    def take(self, project: str, job: str) -> bool:
        """Reserve a slot for a run of this job if neither cap is reached."""
        key = (project, job)
        if key in self.job_cap and self.job_running.get(key, 0) >= self.job_cap[key]:
            return False
        if project in self.project_cap and (
            self.project_running.get(project, 0) >= self.project_cap[project]
        ):
            return False
        self.job_running[key] = self.job_running.get(key, 0) + 1
        self.project_running[project] = self.project_running.get(project, 0) + 1
        return True


def _pending_of(batch: int) -> Any:
    """A project's dispatchable pending runs of one priority, oldest first, with their job's
    properties. One priority at a time: the order is then the dispatch index's own (status,
    project, priority, creation_date), read in order up to the limit instead of sorting every
    pending run. Built once per batch size and run with parameters (project, priority, now).
    SQLite's way; PostgreSQL reads every level at once (_LEVEL_RUNS)."""
    statement: Any = _PENDING_OF.get(batch)
    if statement is None:
        statement = (
            sa.select(
                run_table.c.identifier,
                run_table.c.job,
                run_table.c.creation_date,
                job_table.c.properties,
                _CAPPED,
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
_PENDING_LEVELS = (
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
    c.capped
FROM l CROSS JOIN LATERAL (
    SELECT run.identifier, run.job, run.creation_date, job.properties,
        job.concurrency IS NOT NULL OR project.concurrency IS NOT NULL AS capped
    """
    + _OF_LEVEL
    + """    LIMIT :batch{lock}
) AS c
WHERE l.project IS NOT NULL
ORDER BY l.project, l.priority DESC, c.creation_date, c.identifier"""
)
_LEVEL_RUNS_OF = {
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
    )
    for lock in (False, True)
}
_CAPS = sa.union_all(_JOB_CAPS, _PROJECT_CAPS_AS_JOB)
# The same, locking what it reads (PostgreSQL), still in one statement: FOR UPDATE is not
# allowed on a UNION's parts, but is in a WITH query's.
_LOCKED_JOB_CAPS = _JOB_CAPS.with_for_update().cte("job_caps")
_LOCKED_PROJECT_CAPS = _PROJECT_CAPS_AS_JOB.with_for_update().cte("project_caps")
_LOCKED_CAPS = sa.union_all(sa.select(_LOCKED_JOB_CAPS), sa.select(_LOCKED_PROJECT_CAPS))
_RUNNING_COUNTS = (
    sa.select(run_table.c.project, run_table.c.job, sa.func.count())
    .where(run_table.c.status == RunStatus.RUNNING.value)
    .group_by(run_table.c.project, run_table.c.job)
)
_RUN_KEYS = sa.select(run_table.c.identifier, run_table.c.project, run_table.c.job).where(
    run_table.c.identifier.in_(sa.bindparam("runs", expanding=True))
)
# A run goes to a worker only while it is pending and the worker enabled and staying: the
# database, not the master's session, says so (a worker disabled a moment ago gets nothing).
# One statement claims a pass's runs for all their workers (`_claim_of(count)`, built once per
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


def _claim_of(count: int, uncapped: bool = False) -> Any:
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
                run_table.c.status.concat("") == RunStatus.PENDING.value,
                sa.exists().where(
                    worker_table.c.identifier == chosen,
                    worker_table.c.is_enabled.is_(True),
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


def _claim_with_steps_of(count: int, uncapped: bool = False) -> Any:
    statement = _CLAIMS_WITH_STEPS.get((count, uncapped))
    if statement is None:
        claimed = _claim_of(count, uncapped).cte("claimed")
        statement = _CLAIMS_WITH_STEPS[(count, uncapped)] = sa.select(
            claimed, *(step_table.c[name].label(f"step_{name}") for name in _STEP_FIELDS)
        ).select_from(claimed.outerjoin(step_table, step_table.c.run == claimed.c.identifier))
    return statement


# PostgreSQL, while the runs at the head of the queue are plain (no cap, no properties: any
# worker can take them, so which goes where needs no matching), a whole dispatch pass is this
# one statement: the head of the queue read in dispatch order and locked (skipping what another
# master locked), its first :free runs claimed, the k-th for the k-th of :workers (the free
# executors, as the master's matching would fill them), and their steps returned. Should any
# of those first runs not be plain, nothing is claimed (`blocked` says so) and the pass is done
# the general way. The order is `_candidates_in`'s: priority, then each project's oldest in
# turn (the position within its level), then age.
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
                    AND CAST(job.properties AS TEXT) = '{{}}' AS plain
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
    -- table to `head`; and the guard written so that no index answers it (see _claim_of).
    WHERE run.identifier = ANY(ARRAY(SELECT identifier FROM head))
        AND run.identifier = head.identifier
        AND run.status || '' = :pending
        AND NOT EXISTS (SELECT 1 FROM head WHERE NOT head.plain)
        AND EXISTS (
            SELECT 1 FROM worker
            WHERE worker.identifier = (CAST(:workers AS VARCHAR[]))[head.rank]
                AND worker.is_enabled AND NOT worker.should_disconnect)
    RETURNING {returning}, head.rank AS claim_rank
)
SELECT info.blocked, info.found, claimed.*, {steps}
FROM (SELECT (SELECT count(*) FROM head WHERE NOT head.plain) AS blocked,
        (SELECT count(*) FROM ranked) AS found) AS info
LEFT JOIN (claimed LEFT JOIN run_step ON run_step.run = claimed.identifier) ON true
ORDER BY claimed.claim_rank, run_step.index"""
)


def _runs_with_steps(rows: Sequence[Row]) -> dict[str, Run]:
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


def _plain_claim() -> Any:
    global _PLAIN_CLAIM
    if _PLAIN_CLAIM is None:
        # The columns are typed by position: each named in the order given to `columns`.
        steps = ", ".join(f'run_step."{name}" AS step_{name}' for name in _STEP_FIELDS)
        returning = ", ".join(f'run."{column.name}"' for column in run_table.c)
        _PLAIN_CLAIM = (
            sa.text(_PLAIN_CLAIM_SQL.format(steps=steps, returning=returning))
            .bindparams(pending=RunStatus.PENDING.value, running=RunStatus.RUNNING.value)
            .columns(
                sa.column("blocked", sa.Integer),
                sa.column("found", sa.Integer),
                *run_table.c,
                sa.column("claim_rank", sa.Integer),
                *(sa.column(f"step_{name}", step_table.c[name].type) for name in _STEP_FIELDS),
            )
        )
    return _PLAIN_CLAIM


async def _caps(conn: AsyncConnection, *, lock: bool = False) -> Caps:
    """The caps in force and the running runs counting against them. With `lock` (PostgreSQL),
    the capped jobs and projects are locked until the transaction ends, so that two masters
    claiming at once cannot both take the last slot."""
    job_cap: dict[tuple[str, str], int] = {}
    project_cap: dict[str, int] = {}
    locking = lock and conn.dialect.name == "postgresql"
    found = await direct.rows(conn, _LOCKED_CAPS if locking else _CAPS)
    for project, job, concurrency in (row.values() for row in found):
        if job is None:
            project_cap[project] = concurrency
        else:
            job_cap[(project, job)] = concurrency
    job_running: dict[tuple[str, str], int] = {}
    project_running: dict[str, int] = {}
    if job_cap or project_cap:
        counts = await direct.rows(conn, _RUNNING_COUNTS)
        for project, job, count in (row.values() for row in counts):
            job_running[(project, job)] = count
            project_running[project] = project_running.get(project, 0) + count
    return Caps(job_cap, project_cap, job_running, project_running)


@dataclass(frozen=True)
class Dispatched:
    """What a dispatch pass read, matched and won. `full`: as many candidates as asked for
    were read (more may be pending); `more`: a full DISPATCH_BATCH was, and executors are
    still free (another pass may find more for them)."""

    candidates: list[Candidate]
    assignments: dict[str, str]
    won: list[Run]
    full: bool
    more: bool


@dataclass(frozen=True)
class ReportResult:
    acknowledged: int
    discard_reason: str | None = None
    finished: bool = False


class ExecutionService:
    def __init__(
        self, db: Database, clock: Clock, events: Events, runs: RunService, master: str
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.runs = runs
        self.master = master
        # Reports from every worker connected here, committed in groups (services/groups.py);
        # one run's reports never share a group (they are applied in order).
        self._reports: GroupCommit[tuple[str, m.Report], ReportResult] = GroupCommit(
            self._commit_reports,
            group_max=REPORT_GROUP_MAX,
            what="reports",
            key=lambda item: item[1].run,
        )
        # Whether the last dispatch pass found no capped run among its candidates (see
        # `dispatch`); the first pass finds out.
        self._uncapped_head = False
        self._plain_head = False

    # Workers.

    async def register(
        self, owner: str, hello: m.Hello, *, reconcile: bool = False
    ) -> tuple[bool, dict[str, m.RunDecision] | None]:
        """Create or update the worker record for a connecting worker; returns its is_enabled,
        and with `reconcile` the decisions on the runs it holds, made in the same transaction
        (see `reconcile`). A worker identifier that belongs to another user is refused."""
        now = self.clock.now()
        values = {
            "owner": owner,
            "version": hello.version,
            "display_name": hello.display_name,
            "properties": dict(hello.properties),
            "executors": hello.executors,
            "is_active": True,
            "should_disconnect": False,
            "master": self.master,
            "last_seen_date": now,
        }
        decisions = None
        requeued = False
        # Statements built once (records' cached shapes), values as parameters: a storm of
        # registrations spent most of this in building and coercing a statement per worker.
        keys = {"identifier": hello.identifier}
        async with self.db.transaction() as conn:
            row = await records.fetch_one(conn, worker_table, keys, for_update=True)
            if row is None:
                # A concurrent registration of the same identifier (another master) fails
                # this one on the key: the connection closes and the worker comes back.
                stamp = utcnow()  # as records.insert dates rows: the wall clock
                values.update(creation_date=stamp, update_date=stamp, is_enabled=True)
                await conn.execute(_INSERT_WORKER, {**values, **keys})
                is_enabled = True
            else:
                if row["owner"] != owner:
                    raise Forbidden(f"worker {hello.identifier!r} belongs to another user")
                await records.update(conn, worker_table, keys, values)
                is_enabled = bool(row["is_enabled"])
            if reconcile:
                decisions, requeued = await self._reconcile_in(conn, hello.identifier, hello.runs)
        if requeued:
            self.events.publish("dispatch")
        return is_enabled, decisions

    async def reconcile(self, worker: str, reported: Sequence[str]) -> dict[str, m.RunDecision]:
        """Compare the runs a reconnecting worker holds with what the database says.

        A run still running on this worker resumes from the last event applied. A run the
        master has given up on (or that belongs elsewhere) is discarded by the worker. A run
        assigned to this worker that it does not know never reached it: it goes back to
        pending, which cannot run it twice because nothing ran."""
        async with self.db.transaction() as conn:
            decisions, requeued = await self._reconcile_in(conn, worker, reported)
        if requeued:
            self.events.publish("dispatch")
        return decisions

    async def _reconcile_in(
        self, conn: AsyncConnection, worker: str, reported: Sequence[str]
    ) -> tuple[dict[str, m.RunDecision], bool]:
        """The decisions, and whether a run changed state (went back to pending, or was given
        up on and maybe retried): the dispatcher is signalled after the commit then."""
        decisions: dict[str, m.RunDecision] = {}
        requeued = False
        query = sa.select(run_table).where(
            run_table.c.worker == worker, run_table.c.status == RunStatus.RUNNING.value
        )
        mine = {r["identifier"]: r for r in (await conn.execute(query)).mappings()}
        for run_id in reported:
            row = mine.get(run_id)
            if row is not None:
                decisions[run_id] = m.RunDecision(
                    action="resume", acknowledged=row["event_sequence"]
                )
            else:
                decisions[run_id] = m.RunDecision(
                    action="discard", reason="the master no longer expects this run here"
                )
        for run_id, row in mine.items():
            if run_id in decisions:
                continue
            if row["event_sequence"] == 0:
                await self._requeue(conn, run_id)
                requeued = True
            else:
                await self._give_up(
                    conn, run_id, f"worker {worker} came back without this run (journal lost)"
                )
                requeued = True
        return decisions, requeued

    async def _requeue(self, conn: AsyncConnection, run_id: str) -> None:
        await run_storage.set_run_status(
            conn,
            run_id,
            RunStatus.PENDING,
            [RunStatus.RUNNING],
            {"worker": None, "master": None, "assignment_date": None},
        )

    async def _give_up(self, conn: AsyncConnection, run_id: str, reason: str) -> bool:
        now = self.clock.now()
        moved = await run_storage.set_run_status(
            conn,
            run_id,
            RunStatus.EXCEPTION,
            [RunStatus.RUNNING, RunStatus.PENDING],
            {"completion_date": now, "reason": reason},
        )
        if moved:
            await run_storage.end_running_steps(conn, run_id, StepStatus.EXCEPTION, now)
            await run_storage.skip_pending_steps(conn, run_id, StepStatus.SKIPPED)
            log.warning("run %s ended exception: %s", run_id, reason)
            await self._after_final(conn, run_id)
            self.events.publish(f"run:{run_id}")
        return moved

    async def _after_final(self, conn: AsyncConnection, run_id: str) -> None:
        """A run just ended: retry it if its policy says so (in the same transaction, so a
        retry is never lost nor made twice: `retry_of` is unique)."""
        run = await run_storage.get_run(conn, run_id)
        if run is None:
            return
        retry = retry_from_row(run.retry)
        if retry is not None and retry.applies(run.status.value, run.attempt):
            retried = await self.runs.retry_in(conn, run, retry)
            await records.update(
                conn, run_table, {"identifier": run_id}, {"retried_by": retried.identifier}
            )
            log.info(
                "run %s ended %s: attempt %d is run %s",
                run_id,
                run.status.value,
                retried.attempt,
                retried.identifier,
            )
            self.events.publish("dispatch")

    async def disconnected(self, worker: str) -> None:
        async with self.db.transaction() as conn:
            await records.update(
                conn,
                worker_table,
                {"identifier": worker},
                {"is_active": False, "master": None, "last_seen_date": self.clock.now()},
                where=worker_table.c.master == self.master,
            )

    async def vouch(self, workers: Iterable[str]) -> None:
        """Record that these workers are connected here now (their liveness lease)."""
        identifiers = list(workers)
        if not identifiers:
            return
        async with self.db.transaction() as conn:
            await conn.execute(
                worker_table.update()
                .where(worker_table.c.identifier.in_(identifiers))
                .values(last_seen_date=self.clock.now(), is_active=True, master=self.master)
            )

    async def worker_flags(self, workers: Iterable[str]) -> dict[str, tuple[bool, bool]]:
        """(is_enabled, should_disconnect) of these workers."""
        wanted = set(workers)
        if not wanted:
            return {}
        # Only the exceptions are read (a master polls this for every connected worker; a
        # connected worker cannot be deleted, so the others are enabled and staying).
        async with self.db.peek() as conn:
            query = sa.select(
                worker_table.c.identifier,
                worker_table.c.is_enabled,
                worker_table.c.should_disconnect,
            ).where(
                sa.or_(
                    worker_table.c.is_enabled.is_(False),
                    worker_table.c.should_disconnect.is_(True),
                )
            )
            flags = dict.fromkeys(wanted, (True, False))
            for r in await conn.execute(query):
                if r.identifier in wanted:
                    flags[r.identifier] = (r.is_enabled, r.should_disconnect)
            return flags

    async def runs_to_abort(self, workers: Iterable[str]) -> list[tuple[str, str]]:
        """(worker, run) pairs of running runs whose abort was requested."""
        wanted = set(workers)
        if not wanted:
            return []
        # Running runs are few (index on status); a list of every connected worker is not.
        async with self.db.peek() as conn:
            query = sa.select(run_table.c.worker, run_table.c.identifier).where(
                run_table.c.status == RunStatus.RUNNING.value,
                run_table.c.should_abort.is_(True),
            )
            return [
                (r.worker, r.identifier) for r in await conn.execute(query) if r.worker in wanted
            ]

    async def ended_among(self, runs: Iterable[str]) -> list[str]:
        """Those of these runs that are no longer running (forced or given up meanwhile)."""
        identifiers = list(runs)
        if not identifiers:
            return []
        async with self.db.peek() as conn:
            query = sa.select(run_table.c.identifier).where(
                run_table.c.identifier.in_(identifiers),
                run_table.c.status != RunStatus.RUNNING.value,
            )
            return list((await conn.execute(query)).scalars())

    # Dispatch.

    async def dispatch(
        self,
        batch: int,
        match: Callable[[list[Candidate]], tuple[dict[str, str], bool]],
        plain: Sequence[str] = (),
    ) -> Dispatched:
        """One dispatch pass in one transaction: pending runs are read (`candidates`), given
        to workers by `match` (candidates -> run to worker, and whether executors are left
        free), and claimed. When a batch of `batch` is not enough (every candidate read, yet
        executors left free), DISPATCH_BATCH are read. On PostgreSQL the candidates are
        locked as they are read, skipping any another master has locked: two masters neither
        wait on each other's runs nor both claim one, and the caps are read (and locked) once.

        On PostgreSQL, while the runs at the head of the queue have no cap (the last pass found
        none), a pass is two statements outside a transaction instead: the candidates read,
        then one claim whose guard also wants their job and project still uncapped. Five
        round trips (BEGIN, caps, candidates, claim, COMMIT) become two; a pass that finds a
        capped run among its candidates is done again the transactional way.

        `plain`: the free executors' workers, in the order `match` fills them with runs any
        worker can take. While the head of the queue holds only such runs (no cap, no
        properties), PostgreSQL's pass is one statement (`_PLAIN_CLAIM_SQL`)."""
        now = self.clock.now()
        if plain and self.plain_pass_next:
            dispatched = await self._dispatch_plain(plain, now)
            if dispatched is not None:
                return dispatched
        if self._uncapped_head and not self.db.is_sqlite:
            async with self.db.peek() as conn:
                candidates, assignments, full, left, batch = await self._match_candidates(
                    conn, batch, match, Caps.none()
                )
                self._note_head(candidates)
                if self._uncapped_head:
                    won = await self._claim_in(conn, assignments, now, uncapped=True)
                    more = full and batch >= DISPATCH_BATCH and left
                    return Dispatched(candidates, assignments, won, full, more)
        async with self.db.transaction() as conn:
            caps = await _caps(conn, lock=True)
            candidates, assignments, full, left, batch = await self._match_candidates(
                conn, batch, match, caps, lock=True
            )
            # No cap to check again: the candidates kept within them, in this transaction.
            won = await self._claim_in(conn, assignments, now)
        self._note_head(candidates)
        more = full and batch >= DISPATCH_BATCH and left
        return Dispatched(candidates, assignments, won, full, more)

    @property
    def plain_pass_next(self) -> bool:
        """Whether the next pass may be one statement (PostgreSQL, the head of the queue
        plain at the last pass): only then is `dispatch`'s `plain` worth working out."""
        return self._plain_head and not self.db.is_sqlite

    def _note_head(self, candidates: Sequence[Candidate]) -> None:
        """What the next pass may try first, from what this one read."""
        self._uncapped_head = not any(c.capped for c in candidates)
        self._plain_head = self._uncapped_head and not any(c.properties for c in candidates)

    async def _dispatch_plain(self, workers: Sequence[str], now: datetime) -> Dispatched | None:
        """A pass in one statement (PostgreSQL); None when the head of the queue is not plain
        (nothing was claimed)."""
        parameters = {
            "now": now,
            "free": len(workers),
            "workers": list(workers),
            "master": self.master,
            "assigned": now,
            "updated": utcnow(),
        }
        async with self.db.peek() as conn:
            rows = (await conn.execute(_plain_claim(), parameters)).mappings().all()
        blocked, found = rows[0]["blocked"], rows[0]["found"]
        if blocked:
            self._plain_head = False
            return None
        runs = _runs_with_steps([row for row in rows if row["identifier"] is not None])
        won = list(runs.values())  # in claim order
        for run in won:
            self.events.publish(f"run:{run.identifier}")
        candidates = [Candidate(run.identifier, {}, run.project, run.job) for run in won]
        assignments = {run.identifier: run.worker or "" for run in won}
        # Not `more`: every free executor was offered a run, and the periodic pass (or the
        # next run to end) looks again for any a race left unclaimed.
        return Dispatched(candidates, assignments, won, found > len(won), False)

    async def _match_candidates(
        self,
        conn: AsyncConnection,
        batch: int,
        match: Callable[[list[Candidate]], tuple[dict[str, str], bool]],
        caps: Caps,
        *,
        lock: bool = False,
    ) -> tuple[list[Candidate], dict[str, str], bool, bool, int]:
        """Candidates read and matched: `batch` of them, or DISPATCH_BATCH when `batch` were
        read (more may be pending) and executors are still free. Returns the candidates, the
        assignments, whether the read was full, whether executors are left, and the batch."""
        while True:
            candidates = await self._candidates_in(conn, batch, caps.copy(), lock=lock)
            assignments, left = match(candidates)
            full = len(candidates) >= batch
            if batch >= DISPATCH_BATCH or not full or not left:
                return candidates, assignments, full, left, batch
            batch = DISPATCH_BATCH

    async def candidates(self, batch: int = DISPATCH_BATCH) -> list[Candidate]:
        """Pending runs that may start now, in dispatch order: higher priority first; within a
        priority, projects take turns (a project flooding the queue cannot starve the others);
        within a project, oldest first. Runs of disabled jobs or projects, runs waiting out a
        retry delay and runs over a concurrency cap are left out."""
        # No snapshot needed: these are hints, which a claim checks again under its guard.
        async with self.db.peek() as conn:
            return await self._candidates_in(conn, batch, await _caps(conn))

    async def _candidates_in(
        self, conn: AsyncConnection, batch: int, caps: Caps, *, lock: bool = False
    ) -> list[Candidate]:
        now = self.clock.now()
        ranked: list[tuple[int, int, datetime, Candidate]] = []
        # Each job's properties once (the first of its rows), shared by its runs.
        jobs: dict[tuple[str, str], dict[str, Any]] = {}

        def rank(project: str, priority: int, rows: Iterable[Any], taken: int) -> int:
            for position, row in enumerate(rows):
                if taken >= batch:
                    break  # at most `batch` per project, higher priorities first
                job = row["job"]
                properties = jobs.get((project, job))
                if properties is None:
                    properties = jobs[(project, job)] = dict(row["properties"] or {})
                candidate = Candidate(
                    row["identifier"], properties, project, job, bool(row["capped"])
                )
                ranked.append((-priority, position, row["creation_date"], candidate))
                taken += 1
            return taken

        if conn.dialect.name == "postgresql":
            found = await conn.execute(_LEVEL_RUNS_OF[lock], {"now": now, "batch": batch})
            by_level: dict[tuple[str, int], list[Any]] = {}
            for row in found.mappings():  # by project, then priority from the highest
                by_level.setdefault((row["project"], row["priority"]), []).append(row)
            taken: dict[str, int] = {}
            for (project, priority), rows in by_level.items():
                taken[project] = rank(project, priority, rows, taken.get(project, 0))
        else:
            pending = await direct.rows(conn, _PENDING_LEVELS)
            priorities: dict[str, list[int]] = {}
            for project, priority in (row.values() for row in pending):
                priorities.setdefault(project, []).append(priority)
            for project, levels in priorities.items():
                count = 0
                for priority in sorted(levels, reverse=True):
                    if count >= batch:
                        break
                    level = await direct.rows(
                        conn,
                        _pending_of(batch - count),
                        {"b_project": project, "b_priority": priority, "b_now": now},
                    )
                    count = rank(project, priority, level, count)
        ranked.sort(key=lambda item: item[:3])
        chosen: list[Candidate] = []
        for *_, candidate in ranked:
            if caps.take(candidate.project, candidate.job):
                chosen.append(candidate)
            if len(chosen) >= batch:
                break
        return chosen

    async def claim(
        self, assignments: Mapping[str, str], candidates: Mapping[str, Candidate] | None = None
    ) -> list[Run]:
        """Atomically give each pending run to its worker; returns the runs this master won
        (a run another master claimed first, or one a cap no longer allows, is not among
        them). `candidates` are the runs as `candidates()` found them: their project and job,
        for the caps, are read only for the others."""
        if not assignments:
            return []
        now = self.clock.now()
        async with self.db.transaction() as conn:
            caps = await _caps(conn, lock=True)
            keys = {r: (c.project, c.job) for r, c in (candidates or {}).items()}
            unknown = [r for r in assignments if r not in keys]
            if unknown:
                found = await conn.execute(_RUN_KEYS, {"runs": unknown})
                keys.update((r.identifier, (r.project, r.job)) for r in found)
            allowed = {
                run_id: worker
                for run_id, worker in assignments.items()
                if run_id in keys and caps.take(*keys[run_id])
            }
            return await self._claim_in(conn, allowed, now)

    async def _claim_in(
        self,
        conn: AsyncConnection,
        assignments: Mapping[str, str],
        now: datetime,
        *,
        uncapped: bool = False,
    ) -> list[Run]:
        """One guarded UPDATE claims the runs for their workers, RETURNING what it changed
        (nothing is read back but the steps)."""
        pairs = list(assignments.items())
        if not pairs:
            return []
        parameters: dict[str, Any] = {
            "v_master": self.master,
            "v_assignment_date": now,
            "v_update_date": utcnow(),
        }
        for i, (run_id, worker) in enumerate(pairs):
            parameters[f"r{i}"] = run_id
            parameters[f"w{i}"] = worker
        if conn.dialect.name == "postgresql":
            result = await conn.execute(_claim_with_steps_of(len(pairs), uncapped), parameters)
            runs = _runs_with_steps(result.mappings().all())
        else:
            claimed = await direct.rows(conn, _claim_of(len(pairs), uncapped), parameters)
            rows = {r["identifier"]: r for r in claimed}
            steps = await run_storage.steps_of(conn, rows) if rows else {}
            runs = {r: Run.from_row(rows[r], s) for r, s in steps.items()}
        won = [runs[run_id] for run_id, _ in pairs if run_id in runs]
        for run in won:
            self.events.publish(f"run:{run.identifier}")
        return won

    async def release(self, run_id: str) -> None:
        """Put back a run whose assignment could not be sent (nothing ran)."""
        async with self.db.transaction() as conn:
            await self._requeue(conn, run_id)
        self.events.publish("dispatch")

    # Reports.

    async def report(self, worker: str, report: m.Report) -> ReportResult:
        """Apply a worker's report, in a transaction shared with the reports of other runs
        arriving meanwhile (see `apply_reports`); a ProtocolError if it breaks the protocol."""
        output = sum(len(e.data) for e in report.events if isinstance(e, m.StepOutput))
        if output > REPORT_GROUP_BYTES:
            return await self.apply_report(worker, report)
        return await self._reports.submit((worker, report))

    async def _commit_reports(
        self, group: list[Waiting[tuple[str, m.Report], ReportResult]]
    ) -> None:
        outcomes = await self.apply_reports([waiting.item for waiting in group])
        for waiting, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, ProtocolError):
                waiting.fail(outcome)
            else:
                waiting.answer_with(outcome)

    async def apply_report(self, worker: str, report: m.Report) -> ReportResult:
        """Apply one worker's events for one run (see `apply_reports`)."""
        (outcome,) = await self.apply_reports([(worker, report)])
        if isinstance(outcome, ProtocolError):
            raise outcome
        return outcome

    async def apply_reports(
        self, reports: Sequence[tuple[str, m.Report]]
    ) -> list[ReportResult | ProtocolError]:
        """Apply workers' reports, for different runs, in one transaction; each event exactly
        once. The runs' rows are read (and locked) by one statement. A report that breaks the
        protocol (a run not its worker's, a gap in the sequence, output at the wrong offset) is
        refused alone, before anything of it is written. What the others change goes together:
        one statement per kind of change, with a row of parameters per run or step."""
        if len({report.run for _, report in reports}) != len(reports):
            raise ValueError("one report per run in a group")  # services/groups.py's key
        done: dict[int, ReportResult] = {}
        if not self.db.is_sqlite:
            done = await self._apply_in_one_statement(reports)
        rest = [(worker, report) for i, (worker, report) in enumerate(reports) if i not in done]
        applied = iter(await self._apply_in_transaction(rest) if rest else [])
        outcomes = [done[i] if i in done else next(applied) for i in range(len(reports))]
        for (_, report), outcome in zip(reports, outcomes, strict=True):
            if not isinstance(outcome, ProtocolError):
                self.events.publish(f"run:{report.run}")
        return outcomes

    async def _apply_in_transaction(
        self, reports: Sequence[tuple[str, m.Report]]
    ) -> list[ReportResult | ProtocolError]:
        writes = _Writes()
        outcomes: list[ReportResult | ProtocolError] = []
        async with self.db.transaction() as conn:
            rows = await run_storage.lock_runs(conn, [report.run for _, report in reports])
            for worker, report in reports:
                planned = _Writes()
                try:
                    outcomes.append(_plan(rows.get(report.run), worker, report, planned))
                except ProtocolError as refused:
                    outcomes.append(refused)
                    continue
                writes.merge(planned)
            await self._write(conn, writes)
        return outcomes

    async def _apply_in_one_statement(
        self, reports: Sequence[tuple[str, m.Report]]
    ) -> dict[int, ReportResult]:
        """PostgreSQL: the reports that find their run as their worker left it (running there,
        at the event before their first), applied by one statement without reading the rows
        first (storage/reports.py); by position in `reports`. Reports with output, and those
        whose run is not as expected, are left to the transaction."""
        planned: list[tuple[int, ReportResult, str, int, _Writes]] = []
        for position, (worker, report) in enumerate(reports):
            if not report.events or any(isinstance(e, m.StepOutput) for e in report.events):
                continue
            expected = report.events[0].sequence - 1
            writes = _Writes()
            try:
                result = _plan(_as_left(worker, expected), worker, report, writes)
            except ProtocolError:
                continue  # the transaction refuses it, with the run's actual state
            planned.append((position, result, worker, expected, writes))
        if not planned:
            return {}
        runs: list[report_storage.RunChange] = []
        steps: list[report_storage.StepChange] = []
        skipped: list[str] = []
        for _, _, worker, expected, writes in planned:
            (changes,) = (c for group in writes.runs.values() for c in group)
            runs.append(
                report_storage.RunChange(
                    identifier=changes["identifier"],
                    worker=worker,
                    expected=expected,
                    last_sequence=changes["event_sequence"],
                    started=changes.get("start_date"),
                    status=changes.get("status"),
                    completion_date=changes.get("completion_date"),
                    reason=changes.get("reason"),
                )
            )
            for (guard, _), rows in writes.steps.items():
                for row in rows:
                    steps.append(
                        report_storage.StepChange(
                            run=row["run"],
                            index=row["index"],
                            status=row["status"],
                            start_date=row.get("start_date"),
                            exit_code=row.get("exit_code"),
                            completion_date=row.get("completion_date"),
                            from_pending=guard == _FROM_PENDING,
                        )
                    )
            skipped += writes.skip_pending
        async with self.db.peek() as conn:
            applied = await report_storage.apply(conn, runs, steps, skipped, self.clock.now())
        return {
            position: result
            for position, result, _, _, _ in planned
            if reports[position][1].run in applied
        }

    async def _write(self, conn: AsyncConnection, writes: _Writes) -> None:
        for run_id, step, offset, data in writes.output:
            await run_storage.append_log(conn, run_id, step, offset, data)
            await conn.execute(
                step_table.update()
                .where(step_table.c.run == run_id, step_table.c.index == step)
                .values(log_size=step_table.c.log_size + len(data))
            )
        for (guard, _columns), steps in writes.steps.items():
            await records.update_many(conn, step_table, ("run", "index"), steps, guard)
        # After the steps' own ends: a step that started in these reports is no longer pending.
        await run_storage.skip_pending_steps_of(conn, writes.skip_pending, StepStatus.SKIPPED)
        now = self.clock.now()
        for changes in writes.runs.values():
            for change in changes:
                change["update_date"] = now
            await records.update_many(conn, run_table, ("identifier",), changes)
        for row, worker, report in writes.late:
            await self._record_late(conn, row, worker, report)
        for run_id in writes.retried:
            await self._after_final(conn, run_id)

    async def _record_late(
        self, conn: AsyncConnection, row: Row, worker: str, report: m.Report
    ) -> None:
        ended = [e for e in report.events if isinstance(e, m.RunEnded)]
        if not ended:
            return
        note = (
            f"worker {worker} reported {ended[-1].status} at {ended[-1].date.isoformat()} "
            f"after the run had ended {row['status']}; refused"
        )
        await conn.execute(
            run_table.update()
            .where(run_table.c.identifier == row["identifier"])
            .values(late_report=note)
        )
        log.warning("run %s: %s", row["identifier"], note)

    # Leases and expiry.

    async def expire_pending(self, max_age: float) -> int:
        """Cancel runs pending past their expiry date (the job's `expiry`, or `max_age`
        seconds)."""
        now = self.clock.now()
        cutoff = now - timedelta(seconds=max_age)
        async with self.db.transaction() as conn:
            query = (
                sa.select(run_table.c.identifier, run_table.c.creation_date)
                .where(
                    run_table.c.status == RunStatus.PENDING.value,
                    sa.or_(
                        run_table.c.expiry_date < now,
                        sa.and_(
                            run_table.c.expiry_date.is_(None), run_table.c.creation_date < cutoff
                        ),
                    ),
                )
                .limit(1000)
            )
            rows = list(await conn.execute(query))
            expired = [r.identifier for r in rows]
            for run_id, created in rows:
                waited = (now - created).total_seconds()
                moved = await run_storage.set_run_status(
                    conn,
                    run_id,
                    RunStatus.CANCELLED,
                    [RunStatus.PENDING],
                    {
                        "should_cancel": True,
                        "completion_date": now,
                        "reason": f"expired: still pending after {waited:.0f} seconds",
                    },
                )
                if moved:
                    await run_storage.skip_pending_steps(conn, run_id, StepStatus.SKIPPED)
        for run_id in expired:
            self.events.publish(f"run:{run_id}")
        return len(expired)

    async def expire_leases(
        self, default_lease: float, heartbeat: float, connected: Iterable[str]
    ) -> int:
        """End `exception` the running runs whose worker has been away longer than the lease
        (the run's own, from its job, or the default). Workers connected here are present."""
        now = self.clock.now()
        present = set(connected)
        async with self.db.transaction() as conn:
            query = (
                sa.select(
                    run_table.c.identifier,
                    run_table.c.worker,
                    run_table.c.lease,
                    run_table.c.assignment_date,
                    worker_table.c.last_seen_date,
                )
                .select_from(run_table)
                .outerjoin(worker_table, worker_table.c.identifier == run_table.c.worker)
                .where(
                    run_table.c.status == RunStatus.RUNNING.value,
                    sa.or_(
                        worker_table.c.last_seen_date.is_(None),
                        worker_table.c.last_seen_date < now - timedelta(seconds=heartbeat),
                    ),
                )
            )
            given_up = 0
            for row in await conn.execute(query):
                if row.worker in present:
                    continue
                lease = row.lease or default_lease
                seen = max(d for d in (row.last_seen_date, row.assignment_date, EPOCH) if d)
                if now - seen > timedelta(seconds=lease):
                    reason = f"worker {row.worker} was lost for more than {lease:g} seconds"
                    given_up += await self._give_up(conn, row.identifier, reason)
            # Workers no master has vouched for lately are connected nowhere (their master died).
            stale = now - timedelta(seconds=3 * heartbeat)
            await conn.execute(
                worker_table.update()
                .where(worker_table.c.is_active.is_(True), worker_table.c.last_seen_date < stale)
                .where(worker_table.c.identifier.not_in(present) if present else sa.true())
                .values(is_active=False, master=None)
            )
        return given_up


_Guard = tuple[str, tuple[str, ...]]


class _Writes:
    """What a group of reports changes, gathered before anything is written."""

    def __init__(self) -> None:
        self.output: list[tuple[str, int, int, bytes]] = []  # run, step, offset, data
        # Step rows to update, by guard (the statuses they may be in) and columns: a row of
        # parameters each.
        self.steps: dict[tuple[_Guard, tuple[str, ...]], list[dict[str, Any]]] = {}
        self.skip_pending: list[str] = []  # runs that ended with steps never started
        self.runs: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # by the columns changed
        self.late: list[tuple[Row, str, m.Report]] = []  # reports for runs given up on
        self.retried: list[str] = []  # finished runs with a retry policy

    def merge(self, other: _Writes) -> None:
        self.output += other.output
        for shape, steps in other.steps.items():
            self.steps.setdefault(shape, []).extend(steps)
        self.skip_pending += other.skip_pending
        for columns, changes in other.runs.items():
            self.runs.setdefault(columns, []).extend(changes)
        self.late += other.late
        self.retried += other.retried


_FROM_PENDING: _Guard = ("status", (StepStatus.PENDING.value,))


def _as_left(worker: str, sequence: int) -> Row:
    """A run's row as a worker left it, for `_plan`: running there, at event `sequence` (the
    statement applying the plan holds it to that)."""
    return {
        "worker": worker,
        "status": RunStatus.RUNNING.value,
        "event_sequence": sequence,
        "log_size": 0,
        "start_date": None,
        "retry": None,
    }


_NOT_ENDED: _Guard = ("status", (StepStatus.RUNNING.value, StepStatus.PENDING.value))


def _plan(row: Row | None, worker: str, report: m.Report, writes: _Writes) -> ReportResult:
    """Check a report against its run's row and gather what its new events change into
    `writes`, or raise ProtocolError if it breaks the protocol (`writes` is then to be
    dropped). A step's start and end in one report make one update of its row, and the run's
    own columns one update at the end."""
    if row is None or row["worker"] != worker:
        raise ProtocolError(f"run {report.run} is not assigned to this worker")
    if row["status"] != RunStatus.RUNNING.value:
        writes.late.append((row, worker, report))
        return ReportResult(row["event_sequence"], "the master gave up on this run")
    sequence = int(row["event_sequence"])
    log_size = int(row["log_size"])
    changes: dict[str, Any] = {}
    steps: dict[int, dict[str, Any]] = {}  # step -> the columns its events set
    started: set[int] = set()
    finished = False
    for event in report.events:
        if event.sequence <= sequence:
            continue  # sent again (its acknowledgement was lost): applied already
        if event.sequence != sequence + 1:
            raise ProtocolError(
                f"run {report.run}: event {event.sequence} after {sequence} (a gap)"
            )
        sequence = event.sequence
        if isinstance(event, m.StepOutput):
            data = event.data  # bytes from a binary frame; base64 from a text one
            if isinstance(data, str):
                try:
                    data = base64.b64decode(data, validate=True)
                except binascii.Error:
                    raise ProtocolError("output data is not base64") from None
            if event.offset != log_size:
                raise ProtocolError(
                    f"run {report.run}: output at {event.offset}, expected {log_size}"
                )
            writes.output.append((report.run, event.step, event.offset, data))
            log_size += len(data)
        elif isinstance(event, m.StepStarted):
            steps[event.step] = {"status": StepStatus.RUNNING.value, "start_date": event.date}
            started.add(event.step)
            if row["start_date"] is None and "start_date" not in changes:
                changes["start_date"] = event.date
        elif isinstance(event, m.StepEnded):
            steps.setdefault(event.step, {}).update(
                status=event.status, exit_code=event.exit_code, completion_date=event.date
            )
        elif isinstance(event, m.RunEnded) and not finished:
            finished = True
            changes.update(
                status=RunStatus(event.status).value,
                completion_date=event.date,
                reason=event.reason,
            )
            # A run succeeds only when every step did: only another end leaves some pending.
            if event.status != RunStatus.SUCCEEDED.value:
                writes.skip_pending.append(report.run)
    for index, columns in steps.items():
        ended = "completion_date" in columns
        guard = _FROM_PENDING if index in started and not ended else _NOT_ENDED
        shape = (guard, tuple(columns))
        writes.steps.setdefault(shape, []).append({"run": report.run, "index": index, **columns})
    changes.update(identifier=report.run, event_sequence=sequence, log_size=log_size)
    writes.runs.setdefault(tuple(changes), []).append(changes)
    if finished and retry_from_row(row["retry"]) is not None:
        writes.retried.append(report.run)
    return ReportResult(sequence, finished=finished)
