"""Input validation through the API: identifiers, workspaces, command templates, parameters,
duplicates and Unicode names; every refusal is a 4xx with a `detail`, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestra.services.container import Services
from orchestra.settings import load_settings
from orchestra.web.app import create_app
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

BAD_IDENTIFIERS = ["", "-x", ".x", "a/b", "a" * 101, "a\x00b", "../x", "<script>", "a b", "é"]
STEP = {"name": "s", "command": ["echo", "hi"]}
UNICODE_NAMES = [
    "Ünïcødé 名前 🚀",
    "שלום עולם",  # right to left
    "مرحبا بالعالم \u200f",  # with a right-to-left mark
    "Ελληνικά · ру́сский · 한국어 · emoji 👩‍👩‍👧",  # noqa: RUF001  # look-alike letters on purpose
    "tab\tand\nnewline",
]


@pytest.fixture
async def admin(make_user: MakeUser) -> str:
    return await make_user("admin", ["administrator"])


@pytest.fixture
async def project(services: Services) -> str:
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job(
        "p",
        {
            "identifier": "j",
            "parameters": [{"key": "needed"}, {"key": "optional", "default": "d"}],
            "steps": [{"name": "s", "command": ["echo", "{parameters[needed]}"]}],
        },
    )
    return "p"


def job(**fields: Any) -> dict[str, Any]:
    return {"identifier": "new", "steps": [STEP], **fields}


async def expect_refused(
    api: RecordingClient, method: str, path: str, body: Any, admin: str, what: str
) -> str | None:
    """None if the request was refused with 422 and a detail, else what went wrong."""
    response = await api.request(method, path, json=body, headers=auth(admin))
    if response.status_code != 422:
        return f"{what}: {response.status_code} {response.text[:200]}"
    detail = response.json().get("detail")
    if not isinstance(detail, str) or not detail:
        return f"{what}: no detail in {response.text[:200]}"
    return None


async def test_validation_refuses_bad_identifiers_for_every_kind(
    api: RecordingClient, admin: str, project: str
) -> None:
    kinds = {
        "project": ("/api/v1/projects", lambda i: {"identifier": i}),
        "job": ("/api/v1/projects/p/jobs", lambda i: job(identifier=i)),
        "schedule": (
            "/api/v1/projects/p/schedules",
            lambda i: {"identifier": i, "job": "j", "expression": "@daily"},
        ),
        "user": ("/api/v1/users", lambda i: {"identifier": i}),
        "parameter": ("/api/v1/projects/p/jobs", lambda i: job(parameters=[{"key": i}])),
    }
    problems = []
    for kind, (path, body) in kinds.items():
        for identifier in BAD_IDENTIFIERS:
            what = f"{kind} {identifier[:20]!r}"
            problems.append(await expect_refused(api, "POST", path, body(identifier), admin, what))
    assert [p for p in problems if p] == []
    listed = await api.get("/api/v1/projects", headers=auth(admin))
    assert [p["identifier"] for p in listed.json()["items"]] == ["p"]


async def test_validation_accepts_identifiers_at_the_edges(
    api: RecordingClient, admin: str
) -> None:
    for identifier in ("a", "A" * 100, "0.9_x-Y", "a..b"):
        response = await api.post(
            "/api/v1/projects", json={"identifier": identifier}, headers=auth(admin)
        )
        assert response.status_code == 201, (identifier, response.text)
        assert response.json()["identifier"] == identifier


async def test_validation_refuses_workspaces_outside_the_root(
    api: RecordingClient, admin: str, project: str
) -> None:
    problems = []
    for workspace in ("../x", "/abs", "a/../../b", "..", "a/..", "x/../y", "a\\..\\b", "a\x00"):
        body = job(workspace=workspace)
        what = f"workspace {workspace!r}"
        problems.append(
            await expect_refused(api, "POST", "/api/v1/projects/p/jobs", body, admin, what)
        )
    assert [p for p in problems if p] == []
    fine = await api.post(
        "/api/v1/projects/p/jobs", json=job(workspace="./a//b/"), headers=auth(admin)
    )
    assert fine.status_code == 201
    assert fine.json()["workspace"] == "a/b"


async def test_validation_refuses_command_templates_beyond_the_grammar(
    api: RecordingClient, admin: str, project: str
) -> None:
    templates = [
        "{parameters.__class__}",
        "{parameters.__class__.__mro__}",
        "{0}",
        "{}",
        "{unknown}",
        "{parameters[nope]}",
        "{workspace!r}",
        "{workspace:>10}",
        "{environment.HOME}",
        "{run_identifier[0]}",
        "{parameters[who][0]}",
        "{",
        "}",
    ]
    problems = []
    for template in templates:
        body = job(parameters=[{"key": "who"}], steps=[{"command": ["echo", template]}])
        what = f"template {template!r}"
        problems.append(
            await expect_refused(api, "POST", "/api/v1/projects/p/jobs", body, admin, what)
        )
    for command in ([], "echo hi", [1, 2], None):
        what = f"command {command!r}"
        body = job(steps=[{"command": command}])
        problems.append(
            await expect_refused(api, "POST", "/api/v1/projects/p/jobs", body, admin, what)
        )
    assert [p for p in problems if p] == []
    allowed = [
        "{parameters[who]}",
        "{environment[HOME]}",
        "{run_identifier}-{project_identifier}-{job_identifier}",
        "{worker_identifier}:{workspace}",
        "{{literal braces}}",
    ]
    body = job(parameters=[{"key": "who"}], steps=[{"command": ["echo", *allowed]}])
    created = await api.post("/api/v1/projects/p/jobs", json=body, headers=auth(admin))
    assert created.status_code == 201, created.text
    assert created.json()["steps"][0]["command"] == ["echo", *allowed]


async def test_validation_refuses_changing_a_job_to_use_an_undeclared_parameter(
    api: RecordingClient, admin: str, project: str
) -> None:
    patch = {"steps": [{"command": ["echo", "{parameters[nope]}"]}]}
    response = await api.patch("/api/v1/projects/p/jobs/j", json=patch, headers=auth(admin))
    assert response.status_code == 422
    unchanged = await api.get("/api/v1/projects/p/jobs/j", headers=auth(admin))
    assert unchanged.json()["steps"][0]["command"] == ["echo", "{parameters[needed]}"]


async def test_trigger_refuses_undeclared_and_missing_parameters(
    api: RecordingClient, admin: str, project: str
) -> None:
    path = "/api/v1/projects/p/jobs/j/trigger"
    undeclared = await api.post(
        path, json={"parameters": {"needed": "x", "other": "y"}}, headers=auth(admin)
    )
    assert undeclared.status_code == 422
    assert "other" in undeclared.json()["detail"]
    missing = await api.post(path, json={"parameters": {"optional": "x"}}, headers=auth(admin))
    assert missing.status_code == 422
    assert "needed" in missing.json()["detail"]
    empty = await api.post(path, headers=auth(admin))
    assert empty.status_code == 422
    not_a_mapping = await api.post(path, json={"parameters": ["needed"]}, headers=auth(admin))
    assert not_a_mapping.status_code == 422
    runs = await api.get("/api/v1/projects/p/runs", headers=auth(admin))
    assert runs.json()["items"] == []


async def test_trigger_keeps_a_parameter_value_verbatim_as_one_value(
    api: RecordingClient, admin: str, project: str
) -> None:
    value = "a b; rm -rf / $(whoami) `id` 'quoted' \"double\" {workspace}"
    response = await api.post(
        "/api/v1/projects/p/jobs/j/trigger",
        json={"parameters": {"needed": value}},
        headers=auth(admin),
    )
    assert response.status_code == 201
    run = response.json()
    assert run["parameters"] == {"needed": value, "optional": "d"}
    shown = await api.get(f"/api/v1/projects/p/runs/{run['identifier']}", headers=auth(admin))
    assert shown.json()["parameters"]["needed"] == value
    assert shown.json()["steps"][0]["command"] == ["echo", "{parameters[needed]}"]


async def test_duplicates_are_refused_with_409(
    api: RecordingClient, admin: str, project: str
) -> None:
    creations = [
        ("/api/v1/projects", {"identifier": "dup"}),
        ("/api/v1/projects/p/jobs", job(identifier="dup")),
        (
            "/api/v1/projects/p/schedules",
            {
                "identifier": "dup",
                "job": "j",
                "expression": "@daily",
                "parameters": {"needed": "x"},
            },
        ),
        ("/api/v1/users", {"identifier": "dup"}),
    ]
    for path, body in creations:
        first = await api.post(path, json=body, headers=auth(admin))
        assert first.status_code == 201, (path, first.text)
        second = await api.post(path, json=body, headers=auth(admin))
        assert second.status_code == 409, (path, second.text)
        assert second.json()["detail"]
    # The same identifier in another project is another job.
    await api.post("/api/v1/projects", json={"identifier": "q"}, headers=auth(admin))
    other = await api.post(
        "/api/v1/projects/q/jobs", json=job(identifier="dup"), headers=auth(admin)
    )
    assert other.status_code == 201


async def test_unicode_display_names_round_trip_exactly(
    api: RecordingClient, admin: str, project: str
) -> None:
    for index, name in enumerate(UNICODE_NAMES):
        created = await api.post(
            "/api/v1/projects",
            json={"identifier": f"u{index}", "display_name": name},
            headers=auth(admin),
        )
        assert created.status_code == 201
        assert created.json()["display_name"] == name
        shown = await api.get(f"/api/v1/projects/u{index}", headers=auth(admin))
        assert shown.json()["display_name"] == name
        user = await api.post(
            "/api/v1/users",
            json={"identifier": f"user{index}", "display_name": name},
            headers=auth(admin),
        )
        assert user.json()["display_name"] == name
        description = await api.post(
            "/api/v1/projects/p/jobs",
            json=job(identifier=f"job{index}", display_name=name, description=name * 3),
            headers=auth(admin),
        )
        assert description.json()["display_name"] == name
        fetched = await api.get(f"/api/v1/projects/p/jobs/job{index}", headers=auth(admin))
        assert fetched.json()["description"] == name * 3
    listed = await api.get("/api/v1/users", headers=auth(admin))
    assert set(UNICODE_NAMES) <= {u["display_name"] for u in listed.json()["items"]}


async def test_validation_refuses_control_characters_in_display_names(
    api: RecordingClient, admin: str
) -> None:
    for name in ("nul\x00", "bell\x07", "escape\x1b[31m"):
        response = await api.post(
            "/api/v1/projects", json={"identifier": "x", "display_name": name}, headers=auth(admin)
        )
        assert response.status_code == 422, name


async def test_validation_nul_and_odd_path_parameters_never_give_a_server_error(
    api: RecordingClient, admin: str, project: str
) -> None:
    paths = [
        "/api/v1/projects/a%00b",
        "/api/v1/projects/p/jobs/a%00b",
        "/api/v1/projects/p/schedules/a%00b",
        "/api/v1/projects/p/runs/a%00b",
        "/api/v1/projects/p/runs/a%00b/log",
        "/api/v1/users/a%00b",
        "/api/v1/users/a%00b/tokens",
        "/api/v1/workers/a%00b",
        "/api/v1/projects/%F0%9F%9A%80",
        "/api/v1/projects/" + "x" * 5000,
    ]
    problems = []
    for path in paths:
        response = await api.get(path, headers=auth(admin))
        if response.status_code not in (400, 404, 422) or "detail" not in response.json():
            problems.append(f"{path[:60]}: {response.status_code}")
    login = await api.post("/api/v1/me/login", json={"user": "a\x00", "password": "x\x00"})
    if login.status_code not in (400, 401, 422):
        problems.append(f"login with NUL: {login.status_code}")
    assert problems == []


async def test_validation_refuses_malformed_bodies(
    api: RecordingClient, admin: str, project: str
) -> None:
    headers = {**auth(admin), "Content-Type": "application/json"}
    for content in (b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"identifier": 1}'):
        response = await api.request("POST", "/api/v1/projects", content=content, headers=headers)
        assert response.status_code in (400, 422), content
        assert response.json()["detail"]
    unknown = await api.post(
        "/api/v1/projects", json={"identifier": "x", "colour": "red"}, headers=auth(admin)
    )
    assert unknown.status_code == 422


async def test_validation_refuses_a_body_larger_than_the_limit_with_413(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        {"database_url": database_url, "data_dir": tmp_path, "max_body_bytes": 2000}, environ={}
    )
    services = Services.build(settings)
    try:
        await services.users.create_user("admin", roles=["administrator"])
        _token, secret = await services.users.create_token("admin", None, None)
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            big = {"identifier": "p", "display_name": "x" * 3000}
            declared = await http.post("/api/v1/projects", json=big, headers=auth(secret))
            assert declared.status_code == 413
            assert declared.json()["detail"]

            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"identifier": "p", "display_name": "'
                for _ in range(10):
                    yield b"x" * 500
                yield b'"}'

            streamed = await http.post(
                "/api/v1/projects",
                content=chunks(),
                headers={**auth(secret), "Content-Type": "application/json"},
            )
            assert streamed.status_code == 413
            small = await http.post(
                "/api/v1/projects", json={"identifier": "p"}, headers=auth(secret)
            )
            assert small.status_code == 201
            listed = await http.get("/api/v1/projects", headers=auth(secret))
            assert [p["identifier"] for p in listed.json()["items"]] == ["p"]
    finally:
        await services.close()


async def test_duplicates_created_concurrently_give_one_201_and_409s(
    api: RecordingClient, admin: str, project: str
) -> None:
    creations = [
        ("/api/v1/projects", {"identifier": "race"}),
        ("/api/v1/projects/p/jobs", job(identifier="race")),
        ("/api/v1/users", {"identifier": "race"}),
    ]
    for path, body in creations:
        responses = await asyncio.gather(
            *(api.post(path, json=body, headers=auth(admin)) for _ in range(8))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] + [409] * 7, (path, codes)


async def test_put_with_another_identifier_in_the_body_is_refused(
    api: RecordingClient, admin: str, project: str
) -> None:
    response = await api.put(
        "/api/v1/projects/p", json={"identifier": "q", "display_name": "Q"}, headers=auth(admin)
    )
    assert response.status_code == 422
    created = await api.put("/api/v1/projects/q", json={"display_name": "Q"}, headers=auth(admin))
    assert created.status_code == 201
    replaced = await api.put("/api/v1/projects/q", json={"display_name": "R"}, headers=auth(admin))
    assert replaced.status_code == 200
    assert replaced.json()["display_name"] == "R"
