"""The scheduler against real databases with a controllable clock: at most once per due time
across restarts and concurrent masters, policies that never wedge, and what the API shows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestra.services import scheduler as scheduler_module
from orchestra.services.container import Services
from orchestra.storage.schema import schedule as schedule_table
from orchestra.storage.schema import schedule_firing
from tests.conftest import MakeUser, build_services
from tests.helpers import API, ManualClock, RecordingClient, auth

T0 = datetime(2026, 6, 1, 11, 59, 30, tzinfo=UTC)


async def setup(services: Services, expression: str = "* * * * *", **policies: object) -> None:
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job(
        "p", {"identifier": "j", "steps": [{"name": "a", "command": ["true"]}]}
    )
    await services.projects.create_schedule(
        "p", {"identifier": "s", "job": "j", "expression": expression, **policies}
    )


async def schedule_runs(services: Services) -> list[str]:
    runs, _ = await services.runs.list_runs("p", limit=500)
    assert all(r.source == {"type": "schedule", "schedule": "s"} for r in runs)
    return [r.identifier for r in runs]


async def finish(services: Services, run: str) -> None:
    await services.runs.cancel("p", run)


async def test_scheduler_fires_once_per_due_time(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services)
        clock.current = T0 + timedelta(seconds=31)
        assert await services.scheduler.tick() == 1
        assert await services.scheduler.tick() == 0
        runs = await schedule_runs(services)
        assert len(runs) == 1
        schedule = await services.projects.get_schedule("p", "s")
        assert schedule.last_run == runs[0]
        assert schedule.last_fire_date == T0 + timedelta(seconds=30)
        assert schedule.next_due_date == T0 + timedelta(seconds=90)
    finally:
        await services.close()


async def test_scheduler_restart_catches_up_latest_once(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    first = build_services(database_url, tmp_path, clock)
    try:
        await setup(first)
    finally:
        await first.close()
    clock.current = T0 + timedelta(hours=2, seconds=45)  # the master was down two hours
    second = build_services(database_url, tmp_path, clock)
    try:
        assert await second.scheduler.tick() == 1
        assert await second.scheduler.tick() == 0
        schedule = await second.projects.get_schedule("p", "s")
        assert schedule.last_fire_date == T0 + timedelta(hours=2, seconds=30)
        assert schedule.last_skip_reason == "missed while no master was running"
    finally:
        await second.close()


async def test_scheduler_overlap_skip_never_wedges(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services)
        clock.advance(31)
        assert await services.scheduler.tick() == 1
        clock.advance(60)  # the first run is still pending: skipped, and recorded
        assert await services.scheduler.tick() == 0
        schedule = await services.projects.get_schedule("p", "s")
        assert schedule.last_skip_reason == "the previous run is still pending or running"
        (run,) = await schedule_runs(services)
        await finish(services, run)  # any final status frees the schedule
        clock.advance(60)
        assert await services.scheduler.tick() == 1
    finally:
        await services.close()


async def test_scheduler_overlap_queue_fires_when_previous_ends(
    database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services, overlap="queue")
        clock.advance(31)
        assert await services.scheduler.tick() == 1
        clock.advance(60)
        assert await services.scheduler.tick() == 0
        assert (await services.projects.get_schedule("p", "s")).queued_due_date is not None
        (run,) = await schedule_runs(services)
        await finish(services, run)
        clock.advance(1)
        assert await services.scheduler.tick() == 1
        assert (await services.projects.get_schedule("p", "s")).queued_due_date is None
    finally:
        await services.close()


async def test_scheduler_overlap_allow_and_catchup_all(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services, overlap="allow", catchup="all", catchup_window=3600, catchup_max=4)
        clock.advance(30 + 10 * 60 + 5)  # ten due times missed
        assert await services.scheduler.tick() == 4
        assert len(await schedule_runs(services)) == 4
    finally:
        await services.close()


async def test_scheduler_catchup_none_waits_for_next_time(
    database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services, "0 * * * *", catchup="none")
        clock.current = T0 + timedelta(hours=2)  # 12:00 and 13:00 missed by far
        assert await services.scheduler.tick() == 0
        assert await schedule_runs(services) == []
        clock.current = T0 + timedelta(hours=3, seconds=35)  # 15:00:05, on time
        assert await services.scheduler.tick() == 1
    finally:
        await services.close()


async def test_two_schedulers_racing_fire_each_due_time_once(
    database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    one = build_services(database_url, tmp_path, clock)
    two = build_services(database_url, tmp_path, clock)
    try:
        await setup(one, overlap="allow")
        for _ in range(5):
            clock.advance(60)
            await asyncio.gather(*(s.scheduler.tick() for s in (one, two, one, two)))
        runs = await schedule_runs(one)
        assert len(runs) == 5
        async with one.db.read() as conn:
            fired = await conn.scalar(
                sa.select(sa.func.count()).where(schedule_firing.c.outcome == "fired")
            )
        assert fired == 5
    finally:
        await one.close()
        await two.close()


async def test_disabled_schedule_does_not_fire(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services)
        await services.projects.patch_schedule("p", "s", {"is_enabled": False})
        clock.advance(300)
        assert await services.scheduler.tick() == 0
        await services.projects.patch_schedule("p", "s", {"is_enabled": True})
        assert await services.scheduler.tick() == 0  # re-enabled: from now, no catch-up
        clock.advance(60)
        assert await services.scheduler.tick() == 1
    finally:
        await services.close()


async def test_api_shows_schedule_description_and_next_times(
    api: RecordingClient, make_user: MakeUser
) -> None:
    headers = auth(await make_user("admin", ["administrator"]))
    base = f"{API}/projects/p"
    await api.request("PUT", base, json={}, headers=headers)
    job = {"steps": [{"name": "a", "command": ["true"]}]}
    await api.request("PUT", f"{base}/jobs/j", json=job, headers=headers)
    body = {"identifier": "s", "job": "j", "expression": "30 2 * * *", "time_zone": "Europe/Paris"}
    response = await api.request("POST", f"{base}/schedules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["description"] == "At 02:30, every day (Europe/Paris)"
    assert len(data["next_due_dates"]) == 5
    assert data["overlap"] == "skip" and data["catchup"] == "latest"
    for expression, message in (("0 0 30 2 *", "never fires"), ("61 * * * *", "minute")):
        bad = {**body, "identifier": "t", "expression": expression}
        response = await api.request("POST", f"{base}/schedules", json=bad, headers=headers)
        assert response.status_code == 422 and message in response.json()["detail"]


async def test_many_due_schedules_fire_in_batches_each_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick handles due schedules in batches (one transaction each). A due time already
    recorded (as another master would have) makes its batch fall back to one schedule at a
    time: that schedule is not fired again, every other one fires once."""
    monkeypatch.setattr(scheduler_module, "FIRE_BATCH", 200)
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services)
        for n in range(1, 450):
            await services.projects.create_schedule(
                "p", {"identifier": f"s{n}", "job": "j", "expression": "* * * * *"}
            )
        due = T0 + timedelta(seconds=30)
        async with services.db.transaction() as conn:
            await conn.execute(
                schedule_firing.insert().values(
                    project="p",
                    schedule="s7",
                    due_date=due,
                    run=None,
                    outcome="fired",
                    reason=None,
                    creation_date=due,
                )
            )
        clock.current = T0 + timedelta(seconds=31)
        assert await services.scheduler.tick() == 449
        assert await services.scheduler.tick() == 0
        runs, _ = await services.runs.list_runs("p", limit=500)
        sources = sorted(r.source["schedule"] for r in runs)
        assert len(sources) == 449 and len(set(sources)) == 449 and "s7" not in sources
        assert all(r.warning == "no registered worker has the properties any" for r in runs)
        async with services.db.read() as conn:
            fired = await conn.scalar(
                sa.select(sa.func.count()).where(schedule_firing.c.outcome == "fired")
            )
        assert fired == 450
        for identifier in ("s", "s7", "s449"):
            schedule = await services.projects.get_schedule("p", identifier)
            assert schedule.last_fire_date == due
            assert schedule.next_due_date == T0 + timedelta(seconds=90)
    finally:
        await services.close()


async def test_batches_over_projects_jobs_and_parameters_fire_each_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many due schedules, over several reads of due schedules in one tick and several
    batches (in flight together on PostgreSQL), two masters ticking at once: each schedule
    fires once, and each run has its own schedule's job, parameters and source. A schedule
    whose parameters no longer fit its job records why and does not stop the others."""
    monkeypatch.setattr(scheduler_module, "TICK_BATCH", 40)
    monkeypatch.setattr(scheduler_module, "FIRE_BATCH", 15)
    clock = ManualClock(T0)
    one = build_services(database_url, tmp_path, clock)
    two = build_services(database_url, tmp_path, clock)
    try:
        expected: dict[str, tuple[str, str, dict[str, str]]] = {}
        for project in ("p", "q"):
            await one.projects.create_project({"identifier": project})
            for job in ("j", "k"):
                await one.projects.create_job(
                    project,
                    {
                        "identifier": job,
                        "steps": [{"name": job, "command": ["echo", job]}],
                        "parameters": [{"key": "n", "default": "0", "choices": ["0", "1", "2"]}],
                    },
                )
        for n in range(130):
            project, job = ("p", "q")[n % 2], ("j", "k")[n // 2 % 2]
            parameters = {} if n % 3 == 0 else {"n": str(n % 3)}
            await one.projects.create_schedule(
                project,
                {
                    "identifier": f"s{n}",
                    "job": job,
                    "expression": "* * * * *",
                    "parameters": parameters,
                },
            )
            expected[f"s{n}"] = (project, job, {"n": str(n % 3)})
        async with one.db.transaction() as conn:
            await conn.execute(
                schedule_table.update()
                .where(schedule_table.c.identifier == "s5")
                .values(parameters={"n": "9"})
            )
        del expected["s5"]
        clock.current = T0 + timedelta(seconds=31)
        counts = await asyncio.gather(one.scheduler.tick(), two.scheduler.tick())
        assert sum(counts) == 129
        assert await one.scheduler.tick() == 0 and await two.scheduler.tick() == 0
        runs = [r for p in ("p", "q") for r in (await one.runs.list_runs(p, limit=500))[0]]
        assert len(runs) == 129
        seen = {r.source["schedule"]: (r.project, r.job, r.parameters) for r in runs}
        assert seen == expected
        assert all(r.source == {"type": "schedule", "schedule": r.source["schedule"]} for r in runs)
        assert len({r.identifier for r in runs}) == 129
        for run in runs[:6]:
            shown = await one.runs.get_run(run.project, run.identifier)
            assert [(s.name, s.command) for s in shown.steps] == [(run.job, ["echo", run.job])]
        async with one.db.read() as conn:
            firings = (await conn.execute(sa.select(schedule_firing))).mappings().all()
        assert len(firings) == 130
        assert {f["run"] for f in firings if f["outcome"] == "fired"} == {
            r.identifier for r in runs
        }
        (skipped,) = [f for f in firings if f["outcome"] == "skipped"]
        assert skipped["schedule"] == "s5" and "must be one of" in skipped["reason"]
        for identifier in ("s0", "s5", "s129"):
            project = "p" if int(identifier[1:]) % 2 == 0 else "q"
            schedule = await one.projects.get_schedule(project, identifier)
            assert schedule.next_due_date == T0 + timedelta(seconds=90)
    finally:
        await one.close()
        await two.close()
