"""Keyset pagination: every item exactly once while rows are inserted concurrently, and the
limits and cursors clients may send."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest

from orchestra.services.container import Services
from orchestra.storage import runs as run_storage
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

JOB = {"identifier": "j", "steps": [{"command": ["true"]}]}


async def setup_project(services: Services) -> None:
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", JOB)
    await services.projects.create_job("p", {**JOB, "identifier": "other"})


async def insert_runs_at(services: Services, count: int, when: datetime) -> list[str]:
    """Runs sharing one creation date, so only the identifier orders them."""
    identifiers = [str(uuid.uuid4()) for _ in range(count)]
    async with services.db.transaction() as conn:
        for identifier in identifiers:
            await run_storage.insert_run(
                conn,
                {
                    "identifier": identifier,
                    "project": "p",
                    "job": "j",
                    "parameters": {},
                    "source": {"type": "test"},
                    "worker": None,
                    "status": "pending",
                    "workspace": "j",
                    "should_cancel": False,
                    "should_abort": False,
                    "lease": None,
                    "event_sequence": 0,
                    "log_size": 0,
                    "creation_date": when,
                    "update_date": when,
                },
                [{"name": "s", "command": ["true"]}],
            )
    return identifiers


async def test_runs_pagination_sees_every_existing_run_once_during_concurrent_inserts(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    viewer = await make_user("viewer", ["viewer"])
    await setup_project(services)
    existing = set(await insert_runs_at(services, 12, datetime(2020, 1, 1, tzinfo=UTC)))
    for index in range(25):
        run = await services.runs.trigger("p", "other" if index % 3 else "j", {}, {"type": "t"})
        existing.add(run.identifier)
    existing |= set(await insert_runs_at(services, 9, datetime.now(UTC)))

    inserted: list[str] = []
    progress = asyncio.Event()
    done = False

    async def insert_concurrently() -> None:
        while not done:
            run = await services.runs.trigger("p", "j", {}, {"type": "concurrent"})
            inserted.append(run.identifier)
            progress.set()
            await asyncio.sleep(0)

    inserter = asyncio.create_task(insert_concurrently())
    seen: list[str] = []
    pages = 0
    cursor = None
    try:
        while True:
            # Wait (with a deadline) until the inserter has written since the last page.
            progress.clear()
            await asyncio.wait_for(progress.wait(), timeout=10)
            params: dict[str, str | int] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            response = await api.get("/api/v1/projects/p/runs", params=params, headers=auth(viewer))
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 7
            seen.extend(item["identifier"] for item in page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    finally:
        done = True
        await inserter
    assert len(seen) == len(set(seen)), "a run was listed twice"
    assert existing <= set(seen), f"missed {len(existing - set(seen))} existing runs"
    assert set(seen) <= existing | set(inserted)
    assert pages >= len(existing) // 7
    assert len(inserted) >= pages, "the inserts did not run during the walk"


async def test_runs_pagination_is_newest_first_and_filters_by_job_and_status(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    viewer = await make_user("viewer", ["viewer"])
    await setup_project(services)
    runs = [await services.runs.trigger("p", "j", {}, {"type": "t"}) for _ in range(3)]
    other = await services.runs.trigger("p", "other", {}, {"type": "t"})
    await services.runs.cancel("p", runs[0].identifier)
    listed = (await api.get("/api/v1/projects/p/runs", headers=auth(viewer))).json()
    assert [r["identifier"] for r in listed["items"]] == [
        other.identifier,
        *[r.identifier for r in reversed(runs)],
    ]
    assert listed["next_cursor"] is None
    by_job = await api.get("/api/v1/projects/p/runs", params={"job": "j"}, headers=auth(viewer))
    assert {r["job"] for r in by_job.json()["items"]} == {"j"}
    assert len(by_job.json()["items"]) == 3
    cancelled = await api.get(
        "/api/v1/projects/p/runs", params={"status": "cancelled"}, headers=auth(viewer)
    )
    assert [r["identifier"] for r in cancelled.json()["items"]] == [runs[0].identifier]
    both = await api.get(
        "/api/v1/projects/p/runs",
        params={"status": "pending", "job": "j"},
        headers=auth(viewer),
    )
    assert {r["identifier"] for r in both.json()["items"]} == {
        runs[1].identifier,
        runs[2].identifier,
    }
    none = await api.get("/api/v1/projects/p/runs", params={"worker": "w1"}, headers=auth(viewer))
    assert none.json() == {"items": [], "next_cursor": None, "previous_cursor": None}
    bad = await api.get(
        "/api/v1/projects/p/runs", params={"status": "sleeping"}, headers=auth(viewer)
    )
    assert bad.status_code in (400, 422)
    missing = await api.get("/api/v1/projects/nope/runs", headers=auth(viewer))
    assert missing.status_code == 404


async def test_projects_pagination_walks_every_project_once_in_order(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    viewer = await make_user("viewer", ["viewer"])
    names = sorted(f"project-{i:02d}" for i in range(23))
    for name in reversed(names):
        await services.projects.create_project({"identifier": name})
    seen: list[str] = []
    cursor = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        params: dict[str, str | int] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/api/v1/projects", params=params, headers=auth(viewer))).json()
        seen.extend(p["identifier"] for p in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names
    full = (await api.get("/api/v1/projects", params={"limit": 23}, headers=auth(viewer))).json()
    assert len(full["items"]) == 23
    assert full["next_cursor"] is None
    default = (await api.get("/api/v1/projects", headers=auth(viewer))).json()
    assert len(default["items"]) == 23


@pytest.mark.parametrize(
    "path", ["/api/v1/projects", "/api/v1/projects/p/runs", "/api/v1/users", "/api/v1/workers"]
)
async def test_pagination_refuses_bad_cursors_and_limits(
    services: Services, api: RecordingClient, make_user: MakeUser, path: str
) -> None:
    admin = await make_user("admin", ["administrator"])
    await setup_project(services)
    for cursor in ("garbage!", "bm90IGpzb24", "W10", "WzEsMl0", "x" * 2000, "WyJhIiwgMV0"):
        response = await api.get(path, params={"cursor": cursor}, headers=auth(admin))
        assert response.status_code in (400, 422), (cursor, response.text)
        assert response.json()["detail"]
    for limit in ("0", "501", "-1", "many"):
        response = await api.get(path, params={"limit": limit}, headers=auth(admin))
        assert response.status_code == 422, (limit, response.text)
    assert (await api.get(path, params={"limit": 500}, headers=auth(admin))).status_code == 200
    assert (await api.get(path, params={"limit": 1}, headers=auth(admin))).status_code == 200
