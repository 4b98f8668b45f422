"""The runs API without workers: trigger, the run's own copy of the steps, cancel, abort, logs."""

from __future__ import annotations

import pytest

from orchestra.domain.statuses import RunStatus
from orchestra.services.container import Services
from orchestra.storage import runs as run_storage
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

JOB = {
    "identifier": "j",
    "workspace": "build/j",
    "parameters": [{"key": "who", "default": "world"}],
    "steps": [
        {"name": "first", "command": ["echo", "hello {parameters[who]}"]},
        {"name": "second", "command": ["true"]},
    ],
}


@pytest.fixture
async def operator(services: Services, make_user: MakeUser) -> str:
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", JOB)
    return await make_user("operator", ["operator"])


async def trigger(api: RecordingClient, secret: str, **parameters: str) -> dict:
    response = await api.post(
        "/api/v1/projects/p/jobs/j/trigger",
        json={"parameters": parameters},
        headers=auth(secret),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_trigger_creates_a_pending_run_with_a_copy_of_the_steps(
    api: RecordingClient, operator: str
) -> None:
    run = await trigger(api, operator, who="you")
    assert run["status"] == "pending"
    assert run["project"] == "p"
    assert run["job"] == "j"
    assert run["worker"] is None
    assert run["workspace"] == "build/j"
    assert run["parameters"] == {"who": "you"}
    assert run["source"] == {"type": "api", "user": "operator"}
    assert [(s["index"], s["name"], s["command"], s["status"]) for s in run["steps"]] == [
        (0, "first", ["echo", "hello {parameters[who]}"], "pending"),
        (1, "second", ["true"], "pending"),
    ]
    for field in ("creation_date", "update_date"):
        assert run[field].endswith(("Z", "+00:00")), run[field]
    default = await trigger(api, operator)
    assert default["parameters"] == {"who": "world"}


async def test_trigger_run_keeps_its_steps_when_the_job_changes_later(
    api: RecordingClient, operator: str
) -> None:
    run = await trigger(api, operator)
    changed = await api.patch(
        "/api/v1/projects/p/jobs/j",
        json={"steps": [{"name": "only", "command": ["false"]}], "workspace": "elsewhere"},
        headers=auth(operator),
    )
    assert changed.status_code == 200
    assert [s["name"] for s in changed.json()["steps"]] == ["only"]
    shown = await api.get(f"/api/v1/projects/p/runs/{run['identifier']}", headers=auth(operator))
    assert [s["name"] for s in shown.json()["steps"]] == ["first", "second"]
    assert shown.json()["workspace"] == "build/j"
    deleted = await api.delete("/api/v1/projects/p/jobs/j", headers=auth(operator))
    assert deleted.status_code == 204
    kept = await api.get(f"/api/v1/projects/p/runs/{run['identifier']}", headers=auth(operator))
    assert kept.status_code == 200
    assert [s["command"] for s in kept.json()["steps"]][1] == ["true"]


async def test_trigger_unknown_project_or_job_is_404(api: RecordingClient, operator: str) -> None:
    for path in ("/api/v1/projects/nope/jobs/j/trigger", "/api/v1/projects/p/jobs/nope/trigger"):
        response = await api.post(path, json={}, headers=auth(operator))
        assert response.status_code == 404
        assert response.json()["detail"]


async def test_cancel_pending_run_then_again_is_409(api: RecordingClient, operator: str) -> None:
    run = await trigger(api, operator)
    path = f"/api/v1/projects/p/runs/{run['identifier']}"
    cancelled = await api.post(f"{path}/cancel", headers=auth(operator))
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["completion_date"] is not None
    assert {s["status"] for s in body["steps"]} == {"skipped"}
    again = await api.post(f"{path}/cancel", headers=auth(operator))
    assert again.status_code == 409
    assert again.json()["detail"]
    abort = await api.post(f"{path}/abort", headers=auth(operator))
    assert abort.status_code == 409
    assert (await api.get(path, headers=auth(operator))).json()["status"] == "cancelled"


async def test_abort_pending_run_is_409_and_leaves_it_pending(
    api: RecordingClient, operator: str
) -> None:
    run = await trigger(api, operator)
    path = f"/api/v1/projects/p/runs/{run['identifier']}"
    refused = await api.post(f"{path}/abort", headers=auth(operator))
    assert refused.status_code == 409
    assert "cancel" in refused.json()["detail"]
    shown = (await api.get(path, headers=auth(operator))).json()
    assert shown["status"] == "pending"
    assert shown["should_abort"] is False


async def test_abort_running_run_asks_for_abort_and_cancel_is_409(
    services: Services, api: RecordingClient, operator: str
) -> None:
    run = await trigger(api, operator)
    async with services.db.transaction() as conn:
        assert await run_storage.set_run_status(conn, run["identifier"], RunStatus.RUNNING)
    path = f"/api/v1/projects/p/runs/{run['identifier']}"
    assert (await api.post(f"{path}/cancel", headers=auth(operator))).status_code == 409
    aborted = await api.post(f"{path}/abort", headers=auth(operator))
    assert aborted.status_code == 200
    assert aborted.json()["should_abort"] is True
    assert aborted.json()["status"] == "running"


async def test_runs_of_unknown_project_or_run_are_404(api: RecordingClient, operator: str) -> None:
    run = await trigger(api, operator)
    await api.post("/api/v1/projects", json={"identifier": "q"}, headers=auth(operator))
    for path in (
        "/api/v1/projects/p/runs/00000000-0000-0000-0000-000000000000",
        f"/api/v1/projects/q/runs/{run['identifier']}",  # another project's run
        "/api/v1/projects/nope/runs",
        f"/api/v1/projects/p/runs/{run['identifier']}/steps/2/log",
    ):
        response = await api.get(path, headers=auth(operator))
        assert response.status_code == 404, path
    cancel = await api.post(
        f"/api/v1/projects/q/runs/{run['identifier']}/cancel", headers=auth(operator)
    )
    assert cancel.status_code == 404


async def test_run_log_of_a_pending_run_is_empty_text(
    services: Services, api: RecordingClient, operator: str
) -> None:
    run = await trigger(api, operator)
    path = f"/api/v1/projects/p/runs/{run['identifier']}"
    log = await api.get(f"{path}/log", headers=auth(operator))
    assert log.status_code == 200
    assert log.headers["content-type"].startswith("text/plain")
    assert log.text == ""
    async with services.db.transaction() as conn:
        await run_storage.append_log(conn, run["identifier"], 0, 0, b"hello\n")
        await run_storage.append_log(conn, run["identifier"], 1, 6, b"second\n")
    assert (await api.get(f"{path}/log", headers=auth(operator))).text == "hello\nsecond\n"
    offset = await api.get(f"{path}/log", params={"offset": 3}, headers=auth(operator))
    assert offset.text == "lo\nsecond\n"
    step = await api.get(f"{path}/steps/1/log", headers=auth(operator))
    assert step.text == "second\n"
    negative = await api.get(f"{path}/log", params={"offset": -1}, headers=auth(operator))
    assert negative.status_code == 422


async def test_delete_project_with_a_pending_run_is_409_until_it_is_cancelled(
    api: RecordingClient, operator: str
) -> None:
    run = await trigger(api, operator)
    refused = await api.delete("/api/v1/projects/p", headers=auth(operator))
    assert refused.status_code == 409
    assert (await api.get("/api/v1/projects/p", headers=auth(operator))).status_code == 200
    path = f"/api/v1/projects/p/runs/{run['identifier']}/cancel"
    assert (await api.post(path, headers=auth(operator))).status_code == 200
    assert (await api.delete("/api/v1/projects/p", headers=auth(operator))).status_code == 204
    assert (await api.get("/api/v1/projects/p", headers=auth(operator))).status_code == 404


async def test_delete_job_used_by_a_schedule_is_409(
    services: Services, api: RecordingClient, operator: str
) -> None:
    await services.projects.create_schedule(
        "p", {"identifier": "s", "job": "j", "expression": "@daily"}
    )
    refused = await api.delete("/api/v1/projects/p/jobs/j", headers=auth(operator))
    assert refused.status_code == 409
    assert "s" in refused.json()["detail"]
    await api.delete("/api/v1/projects/p/schedules/s", headers=auth(operator))
    assert (
        await api.delete("/api/v1/projects/p/jobs/j", headers=auth(operator))
    ).status_code == 204
