"""A job's `sandbox` and `limits` on real databases: validation (through the services and the
API, never a 500), the run's own copy, and dispatch: a sandboxed run requires the property
sandbox=true, is never part of a plain pass, and says why it waits."""

from __future__ import annotations

from typing import Any

import pytest

from orchestra.domain.dispatch import assign
from orchestra.domain.matching import worker_matches
from orchestra.domain.statuses import RunStatus
from orchestra.errors import InvalidInput
from orchestra.services.container import Services
from orchestra.storage import records
from orchestra.storage.schema import worker as worker_table
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth
from tests.integration.test_job_controls import STEP, add_worker, execution, job

BAD_SANDBOXES: list[Any] = [
    [],
    "yes",
    1,
    {"network": "no"},
    {"network": 0},
    {"network": None},
    {"net": False},
]
BAD_LIMITS: list[Any] = [
    [],
    {},
    {"memory_mb": 0},
    {"memory_mb": -1},
    {"memory_mb": 1.5},
    {"memory_mb": True},
    {"memory_mb": "512"},
    {"processes": 0},
    {"open_files": 2**40},
    {"cpu_seconds": 0},
    {"memory": 512},
    {"memory_mb": None},
]


@pytest.fixture
def controlled(clocked_services: Services) -> Services:
    return clocked_services


async def set_properties(services: Services, worker: str, properties: dict[str, str]) -> None:
    async with services.db.transaction() as conn:
        await records.update(conn, worker_table, {"identifier": worker}, {"properties": properties})


@pytest.mark.parametrize("sandbox", BAD_SANDBOXES)
async def test_a_bad_sandbox_is_refused_with_its_reason(controlled: Services, sandbox: Any) -> None:
    await controlled.projects.create_project({"identifier": "p"})
    with pytest.raises(InvalidInput, match="sandbox"):
        await controlled.projects.create_job(
            "p", {"identifier": "j", "steps": [STEP], "sandbox": sandbox}
        )


@pytest.mark.parametrize("limits", BAD_LIMITS)
async def test_bad_limits_are_refused_with_their_reason(controlled: Services, limits: Any) -> None:
    await controlled.projects.create_project({"identifier": "p"})
    with pytest.raises(InvalidInput, match="limits"):
        await controlled.projects.create_job(
            "p", {"identifier": "j", "steps": [STEP], "limits": limits}
        )


async def test_sandbox_and_limits_are_stored_and_copied_to_runs(controlled: Services) -> None:
    await job(controlled, "p", "open")
    await job(controlled, "p", "closed", sandbox={}, limits={"memory_mb": 256, "processes": 8})
    stored = await controlled.projects.get_job("p", "closed")
    assert stored.sandbox == {"network": True}  # network defaults to true
    assert stored.limits == {"memory_mb": 256, "processes": 8}
    assert (await controlled.projects.get_job("p", "open")).sandbox is None

    run = await controlled.runs.trigger("p", "closed", {}, {})
    assert (run.sandbox, run.limits) == ({"network": True}, {"memory_mb": 256, "processes": 8})
    # A later edit of the job changes no existing run: the run keeps what it was triggered with.
    await controlled.projects.patch_job("p", "closed", {"sandbox": {"network": False}})
    await controlled.projects.patch_job("p", "closed", {"limits": None})
    shown = await controlled.runs.get_run("p", run.identifier)
    assert (shown.sandbox, shown.limits) == ({"network": True}, {"memory_mb": 256, "processes": 8})
    again = await controlled.runs.trigger("p", "closed", {}, {})
    assert (again.sandbox, again.limits) == ({"network": False}, None)
    plain = await controlled.runs.trigger("p", "open", {}, {})
    stored_plain = await controlled.runs.get_run("p", plain.identifier)
    assert (stored_plain.sandbox, stored_plain.limits) == (None, None)


async def test_a_sandboxed_run_requires_a_worker_that_says_sandbox_true(
    controlled: Services,
) -> None:
    await job(controlled, "p", "j", properties={"os": "linux"})
    before = await controlled.runs.trigger("p", "j", {}, {})
    await controlled.projects.patch_job("p", "j", {"sandbox": {"network": False}})
    sandboxed = await controlled.runs.trigger("p", "j", {}, {})
    found = {
        c.identifier: c.properties for c in await execution(controlled).dispatching.candidates()
    }
    assert found[before.identifier] == {"os": "linux"}
    assert found[sandboxed.identifier] == {"os": "linux", "sandbox": "true"}

    await add_worker(controlled, "open")
    await set_properties(controlled, "open", {"os": "linux"})
    dispatching = execution(controlled).dispatching
    workers = {"open": {"os": "linux"}, "boxed": {"os": "linux", "sandbox": "true"}}

    def match(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
        free = {"open": 5}
        chosen = assign(candidates, free, lambda w, p: worker_matches(p, workers[w]))
        return chosen, True

    dispatched = await dispatching.dispatch(16, match)
    assert [r.identifier for r in dispatched.won] == [before.identifier]
    left = await controlled.runs.get_run("p", sandboxed.identifier)
    assert left.status is RunStatus.PENDING
    assert left.waiting_reason is not None
    assert "no worker can run its steps in a sandbox" in left.waiting_reason
    assert "open: no sandbox property" in left.waiting_reason

    # A worker that tried and cannot says why in its property, and the run shows it.
    await set_properties(controlled, "open", {"os": "linux", "sandbox": "unavailable: no bwrap"})
    left = await controlled.runs.get_run("p", sandboxed.identifier)
    assert "open: unavailable: no bwrap" in (left.waiting_reason or "")

    await add_worker(controlled, "boxed")
    await set_properties(controlled, "boxed", workers["boxed"])

    def match_boxed(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
        free = {"open": 5, "boxed": 1}
        chosen = assign(candidates, free, lambda w, p: worker_matches(p, workers[w]))
        return chosen, True

    dispatched = await dispatching.dispatch(16, match_boxed)
    assert [(r.identifier, r.worker) for r in dispatched.won] == [(sandboxed.identifier, "boxed")]
    assert dispatched.won[0].sandbox == {"network": False}


async def test_trigger_warns_when_no_registered_worker_can_sandbox(controlled: Services) -> None:
    await add_worker(controlled, "w")
    await job(controlled, "p", "j", sandbox={"network": True})
    run = await controlled.runs.trigger("p", "j", {}, {})
    assert run.warning == "no registered worker has the properties sandbox=true"
    await set_properties(controlled, "w", {"sandbox": "true"})
    await job(controlled, "p", "k", sandbox={"network": False})
    assert (await controlled.runs.trigger("p", "k", {}, {})).warning is None


async def test_a_sandboxed_run_is_not_plain(controlled: Services) -> None:
    """PostgreSQL's one-statement pass takes runs that any worker can take: a sandboxed run
    with no properties and no cap at the head of the queue blocks it, and the pass is matched
    the general way, where the run requires sandbox=true."""
    if controlled.db.is_sqlite:
        pytest.skip("SQLite's pass is in-process: no plain pass")
    await job(controlled, "p", "plain")
    await job(controlled, "p", "boxed", sandbox={})
    await add_worker(controlled, "w1")
    engine = execution(controlled)
    first = await controlled.runs.trigger("p", "plain", {}, {"type": "api"})
    assert (await engine.dispatching.dispatch(16, lambda found: ({}, True))).won == []
    assert engine.dispatching.plain_pass_next
    boxed = await controlled.runs.trigger("p", "boxed", {}, {"type": "api"})
    matched: list[list[tuple[str, dict[str, Any]]]] = []

    def match(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
        matched.append([(c.identifier, c.properties) for c in candidates])
        return {c.identifier: "w1" for c in candidates if not c.properties}, True

    dispatched = await engine.dispatching.dispatch(16, match, ["w1", "w1"])

    assert matched == [[(first.identifier, {}), (boxed.identifier, {"sandbox": "true"})]]
    assert [r.identifier for r in dispatched.won] == [first.identifier]
    assert not engine.dispatching.plain_pass_next
    left = await controlled.runs.get_run("p", boxed.identifier)
    assert left.status == RunStatus.PENDING


async def test_the_api_refuses_bad_isolation_with_a_4xx_and_shows_good_isolation(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    await api.post("/api/v1/projects", json={"identifier": "p"}, headers=auth(admin))
    path = "/api/v1/projects/p/jobs"
    problems = []
    for field, values in (("sandbox", BAD_SANDBOXES), ("limits", BAD_LIMITS)):
        for value in values:
            body = {"identifier": "j", "steps": [STEP], field: value}
            response = await api.post(path, json=body, headers=auth(admin))
            detail = response.json().get("detail") if response.status_code < 500 else None
            if response.status_code not in (400, 422) or not detail:
                problems.append(f"{field}={value!r}: {response.status_code} {response.text}")
    assert problems == []
    body = {
        "identifier": "j",
        "steps": [STEP],
        "sandbox": {"network": False},
        "limits": {"memory_mb": 512, "processes": 64, "open_files": 256, "cpu_seconds": 60},
    }
    created = await api.post(path, json=body, headers=auth(admin))
    assert created.status_code == 201, created.text
    assert created.json()["sandbox"] == {"network": False}
    assert created.json()["limits"] == body["limits"]
    patched = await api.patch(f"{path}/j", json={"sandbox": None}, headers=auth(admin))
    assert patched.status_code == 200 and patched.json()["sandbox"] is None
    patched = await api.patch(f"{path}/j", json={"sandbox": {}}, headers=auth(admin))
    assert patched.json()["sandbox"] == {"network": True}
    trigger = await api.post(f"{path}/j/trigger", json={}, headers=auth(admin))
    assert trigger.status_code == 201
    assert trigger.json()["sandbox"] == {"network": True}
    assert trigger.json()["limits"] == body["limits"]
