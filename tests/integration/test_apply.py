"""POST /api/v1/apply: the example document applied twice changes nothing the second time; an
invalid document reports every error with its path and stores nothing."""

from __future__ import annotations

import copy
from pathlib import Path

from orchestra.cli.client import load_document
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orchestra.yaml"


async def test_apply_example_twice_second_time_is_unchanged(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    document = load_document(EXAMPLE)
    first = await api.post("/api/v1/apply", json=document, headers=auth(admin))
    assert first.status_code == 200, first.text
    changes = first.json()["changes"]
    assert {c["action"] for c in changes} == {"created"}
    assert {(c["kind"], c["identifier"]) for c in changes} >= {
        ("project", "example"),
        ("job", "example/hello"),
        ("schedule", "example/nightly"),
    }
    jobs_before = (await api.get("/api/v1/projects/example/jobs", headers=auth(admin))).json()
    second = await api.post("/api/v1/apply", json=document, headers=auth(admin))
    assert second.status_code == 200
    assert [c["identifier"] for c in second.json()["changes"]] == [c["identifier"] for c in changes]
    assert {c["action"] for c in second.json()["changes"]} == {"unchanged"}
    jobs_after = (await api.get("/api/v1/projects/example/jobs", headers=auth(admin))).json()
    assert jobs_after == jobs_before
    hello = (await api.get("/api/v1/projects/example/jobs/hello", headers=auth(admin))).json()
    steps = [(step["name"], step["command"]) for step in hello["steps"]]
    assert steps == [("greet", ["echo", "Hello {parameters[name]}"])]
    schedule = await api.get("/api/v1/projects/example/schedules/nightly", headers=auth(admin))
    assert schedule.json()["parameters"] == {"name": "night"}


async def test_apply_changed_document_reports_updates(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    document = load_document(EXAMPLE)
    await api.post("/api/v1/apply", json=document, headers=auth(admin))
    changed = copy.deepcopy(document)
    changed["projects"][0]["jobs"][0]["description"] = "Says hello, differently"
    response = await api.post("/api/v1/apply", json=changed, headers=auth(admin))
    actions = {c["identifier"]: c["action"] for c in response.json()["changes"]}
    assert actions["example/hello"] == "updated"
    assert actions["example"] == "unchanged"
    assert actions["example/build"] == "unchanged"


async def test_apply_invalid_document_reports_every_error_and_stores_nothing(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    document = {
        "projects": [
            {
                "identifier": "good",
                "jobs": [
                    {"identifier": "ok", "steps": [{"command": ["true"]}]},
                    {"identifier": "bad/job", "steps": [{"command": ["true"]}]},
                    {"identifier": "escape", "workspace": "../x", "steps": [{"command": ["x"]}]},
                    {"identifier": "tpl", "steps": [{"command": ["{parameters.__class__}"]}]},
                ],
                "schedules": [
                    {"identifier": "s1", "job": "missing", "expression": "0 3 * * *"},
                    {"identifier": "s2", "job": "ok", "expression": "not cron"},
                ],
            },
            {"identifier": "-bad"},
        ]
    }
    response = await api.post("/api/v1/apply", json=document, headers=auth(admin))
    assert response.status_code == 422
    detail = response.json()["detail"]
    for path in (
        "projects[0].jobs[1]",
        "projects[0].jobs[2]",
        "projects[0].jobs[3]",
        "projects[0].schedules[1]",
        "projects[1]",
    ):
        assert path in detail, (path, detail)
    assert "missing" in detail
    listed = await api.get("/api/v1/projects", headers=auth(admin))
    assert listed.json()["items"] == []


async def test_apply_is_refused_to_a_viewer(api: RecordingClient, make_user: MakeUser) -> None:
    viewer = await make_user("viewer", ["viewer"])
    response = await api.post("/api/v1/apply", json=load_document(EXAMPLE), headers=auth(viewer))
    assert response.status_code == 403
