"""Run retention (orchestra.services.retention) on a real database: by age, by count, the
instance's default, runs of deleted jobs, batches, and what is never deleted; the job field
through the API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from orchestra.services import retention as retention_module
from orchestra.services.container import Services
from orchestra.services.retention import RetentionService
from orchestra.storage import runs as run_storage
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import run_log, run_step
from tests.helpers import ManualClock, RecordingClient, auth

STEPS = [{"name": "s", "command": ["true"]}]
SOURCE = {"type": "api", "user": "admin"}


@pytest.fixture
async def clocked(clocked_services: Services) -> Services:
    await clocked_services.projects.create_project({"identifier": "p"})
    return clocked_services


async def job(services: Services, identifier: str, **fields: Any) -> None:
    await services.projects.create_job("p", {"identifier": identifier, "steps": STEPS, **fields})


async def run_of(
    services: Services, job: str, created: datetime, *, final: bool = True, log: bytes = b""
) -> str:
    """A run of `job` created at `created`: cancelled then (final) or left pending."""
    run = await services.runs.trigger("p", job, {}, SOURCE)
    if final:
        await services.runs.cancel("p", run.identifier)
    async with services.db.transaction() as conn:
        await conn.execute(
            sa.update(run_table)
            .where(run_table.c.identifier == run.identifier)
            .values(creation_date=created, completion_date=created if final else None)
        )
        if log:
            await run_storage.append_log(conn, run.identifier, 0, 0, log)
    return run.identifier


async def remaining(services: Services, table: sa.Table = run_table) -> set[str]:
    column = table.c.identifier if table is run_table else table.c.run
    async with services.db.read() as conn:
        return set((await conn.execute(sa.select(column))).scalars().all())


async def test_retention_by_age_deletes_old_final_runs_with_their_steps_and_logs(
    clocked: Services, clock: ManualClock
) -> None:
    await job(clocked, "j", retention={"days": 1})
    now = clock.now()
    old = await run_of(clocked, "j", now - timedelta(days=2), log=b"old output\n")
    old_pending = await run_of(clocked, "j", now - timedelta(days=2), final=False)
    recent = await run_of(clocked, "j", now - timedelta(hours=23), log=b"recent\n")
    assert await remaining(clocked, run_log) == {old, recent}

    assert await RetentionService(clocked.db, clock).sweep() == 1
    assert await remaining(clocked) == {old_pending, recent}
    assert await remaining(clocked, run_step) == {old_pending, recent}
    assert await remaining(clocked, run_log) == {recent}
    assert await RetentionService(clocked.db, clock).sweep() == 0  # nothing more to do


async def test_retention_by_count_keeps_the_newest_final_runs(
    clocked: Services, clock: ManualClock
) -> None:
    await job(clocked, "j", retention={"runs": 2})
    now = clock.now()
    finals = [await run_of(clocked, "j", now - timedelta(minutes=10 - n)) for n in range(5)]
    newest_pending = await run_of(clocked, "j", now, final=False)
    await job(clocked, "other")
    other = await run_of(clocked, "other", now - timedelta(days=400))

    assert await RetentionService(clocked.db, clock).sweep() == 3
    assert await remaining(clocked) == {finals[3], finals[4], newest_pending, other}


async def test_instance_default_applies_to_jobs_without_their_own_and_to_deleted_jobs(
    clocked: Services, clock: ManualClock
) -> None:
    now = clock.now()
    await job(clocked, "plain")
    await job(clocked, "longer", retention={"days": 10})
    await job(clocked, "gone")
    plain_old = await run_of(clocked, "plain", now - timedelta(days=2))
    plain_new = await run_of(clocked, "plain", now - timedelta(hours=1))
    longer_old = await run_of(clocked, "longer", now - timedelta(days=2))
    gone_old = await run_of(clocked, "gone", now - timedelta(days=2))
    gone_new = await run_of(clocked, "gone", now - timedelta(hours=1))
    await clocked.projects.delete_job("p", "gone")

    assert {plain_old, gone_old} <= await remaining(clocked)
    assert await RetentionService(clocked.db, clock, default_days=1).sweep() == 2
    assert await remaining(clocked) == {plain_new, longer_old, gone_new}


async def test_retention_counts_days_from_the_end_of_a_run(
    clocked: Services, clock: ManualClock
) -> None:
    """A run that waited or ran longer than the retention is kept its full time after it
    ended, not deleted as soon as it ends."""
    await job(clocked, "j", retention={"days": 1})
    now = clock.now()
    long_runner = await run_of(clocked, "j", now - timedelta(days=5))
    ended_long_ago = await run_of(clocked, "j", now - timedelta(days=5))
    async with clocked.db.transaction() as conn:
        for run, ended in (
            (long_runner, now - timedelta(hours=1)),
            (ended_long_ago, now - timedelta(days=2)),
        ):
            await conn.execute(
                sa.update(run_table)
                .where(run_table.c.identifier == run)
                .values(completion_date=ended)
            )
    assert await RetentionService(clocked.db, clock).sweep() == 1
    assert await remaining(clocked) == {long_runner}


async def test_a_job_keeping_a_number_of_runs_also_gets_the_instance_days(
    clocked: Services, clock: ManualClock
) -> None:
    await job(clocked, "j", retention={"runs": 3})
    now = clock.now()
    old, young = [await run_of(clocked, "j", now - timedelta(days=d)) for d in (3, 0.5)]
    assert await RetentionService(clocked.db, clock, default_days=1).sweep() == 1
    assert await remaining(clocked) == {young}
    assert old not in await remaining(clocked)


async def test_nothing_is_deleted_unless_asked(clocked: Services, clock: ManualClock) -> None:
    await job(clocked, "j")
    ancient = await run_of(clocked, "j", clock.now() - timedelta(days=3000))
    assert await RetentionService(clocked.db, clock).sweep() == 0
    assert await remaining(clocked) == {ancient}


async def test_retention_deletes_in_batches_until_done(
    clocked: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_module, "BATCH", 2)
    await job(clocked, "j", retention={"days": 1, "runs": 1})
    now = clock.now()
    for n in range(5):
        await run_of(clocked, "j", now - timedelta(days=3, minutes=n))
    kept = [await run_of(clocked, "j", now - timedelta(minutes=n)) for n in range(3)]
    assert await RetentionService(clocked.db, clock).sweep() == 7
    assert await remaining(clocked) == {kept[0]}  # young enough, and the newest


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ({}, "retention needs days, runs or both"),
        ({"days": 0}, "retention.days must be positive and at most 36600"),
        ({"days": -1, "runs": 3}, "retention.days must be positive"),
        ({"days": "30"}, "retention.days: Input should be a valid number"),
        ({"runs": 0}, "retention.runs must be a whole number from 1 to 1000000"),
        ({"runs": 2.5}, "retention.runs: Input should be a valid integer"),
        ({"keep": 3}, "retention.keep: Extra inputs are not permitted"),
        ("forever", "retention: Input should be a valid dictionary"),
    ],
)
async def test_job_retention_is_validated(
    api: RecordingClient, make_user: Any, retention: object, message: str
) -> None:
    token = await make_user("admin", ["administrator"])
    await api.put("/api/v1/projects/p", json={"identifier": "p"}, headers=auth(token))
    body = {"identifier": "j", "steps": STEPS, "retention": retention}
    response = await api.put("/api/v1/projects/p/jobs/j", json=body, headers=auth(token))
    assert response.status_code in (400, 422), response.text
    assert message in response.text
    assert (await api.get("/api/v1/projects/p/jobs/j", headers=auth(token))).status_code == 404


async def test_job_retention_round_trips_through_the_api(
    api: RecordingClient, make_user: Any
) -> None:
    token = await make_user("admin", ["administrator"])
    await api.put("/api/v1/projects/p", json={"identifier": "p"}, headers=auth(token))
    body = {"identifier": "j", "steps": STEPS, "retention": {"days": 30, "runs": 100}}
    created = await api.put("/api/v1/projects/p/jobs/j", json=body, headers=auth(token))
    assert created.status_code == 201, created.text
    assert created.json()["retention"] == {"days": 30.0, "runs": 100}
    patched = await api.patch(
        "/api/v1/projects/p/jobs/j", json={"retention": None}, headers=auth(token)
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["retention"] is None
