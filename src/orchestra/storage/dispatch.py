"""Dispatch's reads and claims, one function per operation, each choosing its dialect's way.

The statements are in `dispatch_statements.py`; on SQLite, inside the write transaction, they
run below SQLAlchemy (`direct.py`). Nothing here commits: services/dispatch.py holds the
transactions and decides which way a pass goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import utcnow
from orchestra.domain.dispatch import Caps, Level
from orchestra.domain.models import Run
from orchestra.storage import direct, event_log
from orchestra.storage import dispatch_statements as sql
from orchestra.storage import runs as run_storage


def _is_postgresql(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def read_caps(conn: AsyncConnection, *, lock: bool = False) -> Caps:
    """The caps in force and the running runs counting against them. With `lock` (PostgreSQL),
    the capped jobs and projects are locked until the transaction ends, so that two masters
    claiming at once cannot both take the last slot."""
    job_cap: dict[tuple[str, str], int] = {}
    project_cap: dict[str, int] = {}
    locking = lock and _is_postgresql(conn)
    found = await direct.rows(conn, sql.LOCKED_CAPS if locking else sql.CAPS)
    for project, job, concurrency in (row.values() for row in found):
        if job is None:
            project_cap[project] = concurrency
        else:
            job_cap[(project, job)] = concurrency
    job_running: dict[tuple[str, str], int] = {}
    project_running: dict[str, int] = {}
    if job_cap or project_cap:
        counts = await direct.rows(conn, sql.RUNNING_COUNTS)
        for project, job, count in (row.values() for row in counts):
            job_running[(project, job)] = count
            project_running[project] = project_running.get(project, 0) + count
    return Caps(job_cap, project_cap, job_running, project_running)


async def read_levels(
    conn: AsyncConnection, batch: int, now: datetime, *, lock: bool = False
) -> list[Level]:
    """The dispatchable pending runs (enabled job and project, not waiting out a delay) by
    (project, priority) level, each project's levels from the highest priority down, at most
    `batch` runs per project. `lock` (PostgreSQL): the runs are locked as read, skipping those
    another master has locked."""
    if _is_postgresql(conn):
        found = await conn.execute(sql.LEVEL_RUNS_OF[lock], {"now": now, "batch": batch})
        by_level: dict[tuple[str, int], list[Any]] = {}
        for row in found.mappings():  # by project, then priority from the highest
            by_level.setdefault((row["project"], row["priority"]), []).append(row)
        return [Level(project, priority, rows) for (project, priority), rows in by_level.items()]
    # SQLite: the levels by skip-scan, then each level's oldest in the index's order.
    pending = await direct.rows(conn, sql.PENDING_LEVELS)
    priorities: dict[str, list[int]] = {}
    for project, priority in (row.values() for row in pending):
        priorities.setdefault(project, []).append(priority)
    levels: list[Level] = []
    for project, found_levels in priorities.items():
        count = 0
        for priority in sorted(found_levels, reverse=True):
            if count >= batch:
                break
            rows = await direct.rows(
                conn,
                sql.pending_of(batch - count),
                {"b_project": project, "b_priority": priority, "b_now": now},
            )
            levels.append(Level(project, priority, rows))
            count += len(rows)
    return levels


async def run_keys(conn: AsyncConnection, runs: Sequence[str]) -> dict[str, tuple[str, str]]:
    """The (project, job) of these runs."""
    found = await conn.execute(sql.RUN_KEYS, {"runs": list(runs)})
    return {r.identifier: (r.project, r.job) for r in found}


async def claim(
    conn: AsyncConnection,
    assignments: Mapping[str, str],
    master: str,
    now: datetime,
    *,
    uncapped: bool = False,
) -> dict[str, Run]:
    """One guarded UPDATE gives each run to its worker while the run is pending and the worker
    enabled, approved and staying (`uncapped`: and the run's job and project have no cap);
    returns the runs it changed, with their steps (nothing is read back but the steps)."""
    pairs = list(assignments.items())
    if not pairs:
        return {}
    parameters: dict[str, Any] = {
        "v_master": master,
        "v_assignment_date": now,
        "v_update_date": utcnow(),
    }
    for i, (run_id, worker) in enumerate(pairs):
        parameters[f"r{i}"] = run_id
        parameters[f"w{i}"] = worker
    if _is_postgresql(conn):
        result = await conn.execute(sql.claim_with_steps_of(len(pairs), uncapped), parameters)
        return sql.runs_with_steps(result.mappings().all())
    claimed = await direct.rows(conn, sql.claim_of(len(pairs), uncapped), parameters)
    rows = {r["identifier"]: r for r in claimed}
    logged = (
        event_log.Change(event_log.RUN_UPDATED, r["project"], i, r["status"])
        for i, r in rows.items()
    )
    await event_log.append(conn, logged, parameters["v_update_date"])
    steps = await run_storage.steps_of(conn, rows) if rows else {}
    return {r: Run.from_row(rows[r], s) for r, s in steps.items()}


@dataclass(frozen=True)
class PlainClaim:
    """What a one-statement pass did: `blocked` when the head of the queue was not plain
    (nothing was claimed), the pending runs it `found`, the runs it `won` in claim order."""

    blocked: bool
    found: int
    won: list[Run]


async def claim_plain(
    conn: AsyncConnection, workers: Sequence[str], master: str, now: datetime
) -> PlainClaim:
    """PostgreSQL only: a whole pass in one statement, the k-th run of the head of the queue
    for the k-th of `workers` (see dispatch_statements.py)."""
    parameters = {
        "now": now,
        "free": len(workers),
        "workers": list(workers),
        "master": master,
        "assigned": now,
        "updated": utcnow(),
    }
    rows = (await conn.execute(sql.plain_claim(), parameters)).mappings().all()
    blocked, found = rows[0]["blocked"], rows[0]["found"]
    if blocked:
        return PlainClaim(True, found, [])
    runs = sql.runs_with_steps([row for row in rows if row["identifier"] is not None])
    return PlainClaim(False, found, list(runs.values()))
