"""The data of the website's charts, on both engines: a job's newest runs as bars, and a
project's runs that ended counted by UTC day and status (cancelled runs count in no rate)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from orchestra.services import run_trends
from orchestra.services.container import Services
from orchestra.storage import runs as run_storage
from orchestra.storage.schema import run as run_table
from tests.integration.test_pagination import setup_project

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def add_run(
    services: Services, job: str, status: str, created: datetime, seconds: float | None
) -> str:
    identifier = str(uuid.uuid4())
    values = {
        "identifier": identifier,
        "project": "p",
        "job": job,
        "parameters": {},
        "source": {"type": "test"},
        "worker": None,
        "status": "pending",
        "workspace": job,
        "should_cancel": False,
        "should_abort": False,
        "lease": None,
        "event_sequence": 0,
        "log_size": 0,
        "creation_date": created,
        "update_date": created,
    }
    ended: dict[str, object] = {"status": status}
    if seconds is not None:
        ended |= {"start_date": created, "completion_date": created + timedelta(seconds=seconds)}
    async with services.db.transaction() as conn:
        await run_storage.insert_run(conn, values, [{"name": "s", "command": ["true"]}])
        await conn.execute(
            sa.update(run_table).where(run_table.c.identifier == identifier).values(ended)
        )
    return identifier


async def test_a_jobs_bars_are_its_newest_runs_oldest_first(services: Services) -> None:
    await setup_project(services)
    made = []
    for index, status in enumerate(["succeeded", "failed", "succeeded", "cancelled"]):
        seconds = None if status == "cancelled" else 10.0 * (index + 1)
        made.append(await add_run(services, "j", status, NOW + timedelta(minutes=index), seconds))
    await add_run(services, "other", "failed", NOW, 5.0)  # another job's: not drawn
    running = await add_run(services, "j", "running", NOW + timedelta(minutes=9), None)
    async with services.db.transaction() as conn:
        started = {"start_date": NOW + timedelta(minutes=9)}
        await conn.execute(
            sa.update(run_table).where(run_table.c.identifier == running).values(started)
        )
    bars = await run_trends.job_bars(services.db, "p", "j", NOW + timedelta(minutes=10), 4)
    assert [b.identifier for b in bars] == [*made[1:], running]  # the 4 newest, oldest first
    assert [b.status for b in bars] == ["failed", "succeeded", "cancelled", "running"]
    assert [b.seconds for b in bars] == [20.0, 30.0, None, 60.0]  # a running one: until now


async def test_a_projects_days_count_the_runs_that_ended_by_utc_day(services: Services) -> None:
    await setup_project(services)
    yesterday = NOW - timedelta(days=1)
    for status in ("succeeded", "succeeded", "succeeded", "failed", "cancelled"):
        await add_run(services, "j", status, yesterday.replace(hour=23, minute=59), 1.0)
    await add_run(services, "other", "exception", NOW.replace(hour=0, minute=0), 1.0)
    await add_run(services, "j", "succeeded", NOW - timedelta(days=40), 1.0)  # too old
    await add_run(services, "j", "pending", NOW, None)  # not ended: in no rate
    days = await run_trends.project_days(services.db, "p", NOW, 7)
    assert [d.day for d in days] == [date(2026, 3, 4) + timedelta(days=n) for n in range(7)]
    assert [(d.ran, d.succeeded) for d in days[-2:]] == [(4, 3), (1, 0)]
    assert days[-2].rate == 0.75 and days[-1].rate == 0.0
    assert all(d.rate is None for d in days[:-2])
