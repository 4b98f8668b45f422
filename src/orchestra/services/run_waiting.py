"""Why a run waits: the trigger's "no worker could ever take it" warning, and a pending run's
`waiting_reason` (services/runs.py shows both)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.matching import SANDBOX_PROPERTY, required_properties, worker_matches
from orchestra.domain.models import Row, Run
from orchestra.domain.statuses import RunStatus
from orchestra.storage import records
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import worker as worker_table

# A job's properties some registered worker was seen to match, and when: the trigger's "no
# matching worker" check reads every worker's properties, so a positive answer is kept a few
# seconds (workers are never deleted; only a worker re-registering with other properties can
# make it stale, and then only for this long). A negative answer is never kept.
MATCH_CACHE_SECONDS = 5.0


async def unmatched_warning(
    conn: AsyncConnection,
    properties: Mapping[str, Any],
    matched: dict[str, float] | None = None,
) -> str | None:
    """Fail fast: say so when no registered worker could ever take a job's runs. `matched`
    keeps the positive answers (properties -> when) for MATCH_CACHE_SECONDS."""
    key = json.dumps(properties, sort_keys=True, default=str)
    now = time.monotonic()
    seen = None if matched is None else matched.get(key)
    if seen is not None and now - seen < MATCH_CACHE_SECONDS:
        return None
    query = sa.select(worker_table.c.properties)
    for (worker_properties,) in await conn.execute(query):
        if worker_matches(properties, worker_properties):
            if matched is not None:
                if len(matched) > 10_000:
                    matched.clear()
                matched[key] = now
            return None
    wanted = ", ".join(f"{k}={v}" for k, v in properties.items()) or "any"
    return f"no registered worker has the properties {wanted}"


async def waiting_reason(conn: AsyncConnection, run: Run) -> str:
    """Why a pending run has not been given to a worker."""
    project = await records.fetch_one(conn, project_table, {"identifier": run.project})
    if project is not None and not project["is_enabled"]:
        return "the project is disabled"
    job = await records.fetch_one(conn, job_table, {"project": run.project, "identifier": run.job})
    if job is None:
        return "the job no longer exists"
    if not job["is_enabled"]:
        return "the job is disabled"
    if run.not_before is not None and run.not_before > datetime.now(UTC):
        return f"retry attempt {run.attempt} waits until {run.not_before.isoformat()}"
    for cap, scope, where in (
        (job["concurrency"], "job", run_table.c.job == run.job),
        (project["concurrency"] if project is not None else None, "project", sa.true()),
    ):
        if cap is None:
            continue
        holders = list(
            (
                await conn.execute(
                    sa.select(run_table.c.identifier).where(
                        run_table.c.project == run.project,
                        where,
                        run_table.c.status == RunStatus.RUNNING.value,
                    )
                )
            ).scalars()
        )
        if len(holders) >= cap:
            return f"the {scope}'s concurrency limit ({cap}) is held by runs {', '.join(holders)}"
    busy: dict[str, int] = dict(
        (
            await conn.execute(
                sa.select(run_table.c.worker, sa.func.count())
                .where(run_table.c.status == RunStatus.RUNNING.value)
                .group_by(run_table.c.worker)
            )
        )
        .tuples()
        .all()  # a Result has keys(): dict() would take it for a mapping
    )
    workers = (await conn.execute(sa.select(worker_table))).mappings().all()
    required = required_properties(job["properties"], run.sandbox)
    matching = [w for w in workers if worker_matches(required, w["properties"])]
    if not matching:
        if run.sandbox is not None:
            return _no_sandbox_reason(
                [w for w in workers if worker_matches(job["properties"], w["properties"])]
            )
        wanted = ", ".join(f"{k}={v}" for k, v in job["properties"].items())
        return f"no worker has the properties {wanted}"
    active = [w for w in matching if w["is_active"]]
    if not active:
        return "no matching worker is connected"
    if all(not w["is_enabled"] or busy.get(w["identifier"], 0) >= w["executors"] for w in active):
        return "all matching workers are busy or disabled"
    return "waiting for a master to assign it"


def _no_sandbox_reason(workers: list[Row]) -> str:
    """Why no worker takes a sandboxed run: none says sandbox=true; what those that would
    otherwise match say instead (a worker that cannot sandbox says why in its property)."""
    reason = "no worker can run its steps in a sandbox (none has the property sandbox=true)"
    said = [
        f"{w['identifier']}: {w['properties'].get(SANDBOX_PROPERTY) or 'no sandbox property'}"
        for w in workers[:5]
    ]
    if said:
        more = f" and {len(workers) - 5} more" if len(workers) > 5 else ""
        reason += f"; {'; '.join(said)}{more}"
    return reason
