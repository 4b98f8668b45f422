"""Pipelines' definitions through the API, apply and the website, on both engines: the round
trip, PATCH keeping what it does not name, every refusal a 422 naming the node with nothing
stored, a job a pipeline runs kept from deletion, schedules of pipelines, and the pipeline page
drawing every node and arrow with names escaped."""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestra.cli.client import load_document
from orchestra.server import build_app
from orchestra.services.container import Services
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

API = "/api/v1"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orchestra.yaml"
STEP = {"name": "s", "command": ["echo", "hi"]}
JOBS = [
    {"identifier": "build", "parameters": [{"key": "version"}], "steps": [STEP]},
    {"identifier": "test", "parameters": [{"key": "package", "default": "x"}], "steps": [STEP]},
    {"identifier": "publish", "steps": [STEP]},
]
RELEASE: dict[str, Any] = {
    "identifier": "release",
    "display_name": "Release",
    "description": "Build, test, approve, publish",
    "parameters": [{"key": "version", "default": "1.0"}],
    "nodes": [
        {"identifier": "build", "job": "build", "parameters": {"version": "{parameters[version]}"}},
        {
            "identifier": "test-linux",
            "job": "test",
            "needs": ["build"],
            "parameters": {"package": "{results[build][package]}"},
        },
        {"identifier": "test-mac", "job": "test", "needs": ["build"]},
        {
            "identifier": "approve",
            "approval": {"description": "Publish it?"},
            "needs": ["test-linux", "test-mac"],
        },
        {"identifier": "publish", "job": "publish", "needs": ["approve"]},
        {"identifier": "report", "job": "publish", "needs": ["build"], "when": "failure"},
    ],
}


@pytest.fixture
async def admin(make_user: MakeUser, services: Services) -> dict[str, str]:
    await services.projects.create_project({"identifier": "p"})
    for job in JOBS:
        await services.projects.create_job("p", job)
    return auth(await make_user("admin", ["administrator"]))


async def test_pipeline_round_trip_put_patch_list_delete(
    api: RecordingClient, admin: dict[str, str]
) -> None:
    created = await api.post(f"{API}/projects/p/pipelines", json=RELEASE, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["project"] == "p"
    assert body["is_enabled"] is True
    assert [n["identifier"] for n in body["nodes"]] == [n["identifier"] for n in RELEASE["nodes"]]
    assert body["nodes"][0] == {
        "identifier": "build",
        "job": "build",
        "approval": None,
        "needs": [],
        "when": "success",
        "parameters": {"version": "{parameters[version]}"},
    }
    assert body["nodes"][3]["approval"] == {"description": "Publish it?"}
    assert body["nodes"][3]["job"] is None
    again = await api.post(f"{API}/projects/p/pipelines", json=RELEASE, headers=admin)
    assert again.status_code == 409

    # What GET shows may be sent back as it is.
    shown = (await api.get(f"{API}/projects/p/pipelines/release", headers=admin)).json()
    assert shown == body
    resent = {k: shown[k] for k in ("display_name", "description", "parameters", "nodes")}
    put = await api.put(f"{API}/projects/p/pipelines/release", json=resent, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["nodes"] == body["nodes"]

    patched = await api.patch(
        f"{API}/projects/p/pipelines/release",
        json={"description": "changed", "is_enabled": False},
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "changed"
    assert patched.json()["is_enabled"] is False
    assert patched.json()["nodes"] == body["nodes"]  # kept
    assert patched.json()["parameters"] == body["parameters"]  # kept
    assert patched.json()["display_name"] == "Release"

    small = {"nodes": [{"identifier": "only", "job": "publish"}]}
    new = await api.put(f"{API}/projects/p/pipelines/small", json=small, headers=admin)
    assert new.status_code == 201
    listed = (await api.get(f"{API}/projects/p/pipelines?limit=1", headers=admin)).json()
    assert [p["identifier"] for p in listed["items"]] == ["release"]
    rest = await api.get(
        f"{API}/projects/p/pipelines?cursor={listed['next_cursor']}", headers=admin
    )
    assert [p["identifier"] for p in rest.json()["items"]] == ["small"]

    deleted = await api.delete(f"{API}/projects/p/pipelines/small", headers=admin)
    assert deleted.status_code == 204
    gone = await api.get(f"{API}/projects/p/pipelines/small", headers=admin)
    assert gone.status_code == 404
    assert gone.json()["detail"] == "no pipeline 'small' in project 'p'"
    missing = await api.get(f"{API}/projects/nope/pipelines", headers=admin)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            {"needs": ["publish"], "identifier": "build"},
            "node 'build': the needs form a cycle: build -> test-linux -> approve -> publish "
            "-> build",
        ),
        ({"identifier": "build", "needs": ["ghost"]}, "node 'build' needs unknown node 'ghost'"),
        ({"identifier": "build", "job": None}, "node 'build': a node names exactly one of"),
        ({"identifier": "build", "approval": {}}, "node 'build': a node names exactly one of"),
        ({"identifier": "build", "job": "nope"}, "node 'build': no job 'nope' in this project"),
        (
            {"identifier": "build", "parameters": {"version": "1", "other": "2"}},
            "node 'build': job 'build' declares no parameter 'other'",
        ),
        (
            {"identifier": "build", "parameters": {}},
            "node 'build': job 'build' requires parameter 'version'",
        ),
        (
            {"identifier": "build", "parameters": {"version": "{secrets[TOKEN]}"}},
            "node 'build': parameter 'version': template '{secrets[TOKEN]}': {secrets[...]} is "
            "not allowed",
        ),
        (
            {"identifier": "build", "parameters": {"version": "{parameters[v2]}"}},
            "node 'build': parameter 'version' uses {parameters[v2]}, which the pipeline does "
            "not declare",
        ),
        (
            {"identifier": "test-mac", "parameters": {"package": "{results[test-linux][p]}"}},
            "node 'test-mac': parameter 'package' uses a result of node 'test-linux', which is "
            "not among its needs",
        ),
        ({"identifier": "test-mac", "when": "never"}, "node 'test-mac': when must be one of"),
    ],
)
async def test_an_invalid_pipeline_is_refused_naming_the_node_and_nothing_is_stored(
    api: RecordingClient, admin: dict[str, str], change: dict[str, Any], detail: str
) -> None:
    broken = copy.deepcopy(RELEASE)
    node = next(n for n in broken["nodes"] if n["identifier"] == change["identifier"])
    node.update(change)
    created = await api.post(f"{API}/projects/p/pipelines", json=broken, headers=admin)
    assert created.status_code == 422, created.text
    assert created.json()["detail"].startswith(detail), created.json()["detail"]
    assert (await api.get(f"{API}/projects/p/pipelines", headers=admin)).json()["items"] == []
    # The same refusal when a stored pipeline is changed; it keeps its nodes.
    assert (await api.post(f"{API}/projects/p/pipelines", json=RELEASE, headers=admin)).is_success
    patched = await api.patch(
        f"{API}/projects/p/pipelines/release", json={"nodes": broken["nodes"]}, headers=admin
    )
    assert patched.status_code == 422
    assert patched.json()["detail"].startswith(detail)
    kept = await api.get(f"{API}/projects/p/pipelines/release", headers=admin)
    assert [n["identifier"] for n in kept.json()["nodes"]] == [
        n["identifier"] for n in RELEASE["nodes"]
    ]


async def test_duplicate_nodes_and_too_many_nodes_are_refused(
    api: RecordingClient, admin: dict[str, str]
) -> None:
    twice = {**RELEASE, "nodes": [*RELEASE["nodes"], RELEASE["nodes"][0]]}
    response = await api.post(f"{API}/projects/p/pipelines", json=twice, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"] == "node 'build' appears more than once"
    many = {
        "identifier": "many",
        "nodes": [{"identifier": f"n{i}", "approval": {}} for i in range(501)],
    }
    response = await api.post(f"{API}/projects/p/pipelines", json=many, headers=admin)
    assert response.status_code == 422
    assert "at most 500 nodes" in response.json()["detail"]


async def test_a_job_that_a_pipeline_runs_cannot_be_deleted(
    api: RecordingClient, admin: dict[str, str]
) -> None:
    assert (await api.post(f"{API}/projects/p/pipelines", json=RELEASE, headers=admin)).is_success
    refused = await api.delete(f"{API}/projects/p/jobs/publish", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "job 'publish' is run by pipeline 'release'"
    assert (await api.get(f"{API}/projects/p/jobs/publish", headers=admin)).status_code == 200
    await api.delete(f"{API}/projects/p/pipelines/release", headers=admin)
    assert (await api.delete(f"{API}/projects/p/jobs/publish", headers=admin)).status_code == 204


async def test_schedules_of_pipelines(api: RecordingClient, admin: dict[str, str]) -> None:
    assert (await api.post(f"{API}/projects/p/pipelines", json=RELEASE, headers=admin)).is_success
    schedule = {
        "identifier": "nightly",
        "pipeline": "release",
        "expression": "0 3 * * *",
        "parameters": {"version": "2.0"},
    }
    created = await api.post(f"{API}/projects/p/schedules", json=schedule, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["pipeline"] == "release"
    assert created.json()["job"] is None
    assert created.json()["parameters"] == {"version": "2.0"}

    both = {**schedule, "identifier": "both", "job": "publish"}
    response = await api.post(f"{API}/projects/p/schedules", json=both, headers=admin)
    assert response.status_code == 422
    assert "exactly one of job and pipeline" in response.json()["detail"]
    neither = {k: v for k, v in schedule.items() if k != "pipeline"}
    response = await api.post(f"{API}/projects/p/schedules", json=neither, headers=admin)
    assert response.status_code == 422
    assert "exactly one of job and pipeline" in response.json()["detail"]
    unknown = {**schedule, "identifier": "u", "pipeline": "nope"}
    response = await api.post(f"{API}/projects/p/schedules", json=unknown, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"] == "no pipeline 'nope' in project 'p'"
    undeclared = {**schedule, "identifier": "u", "parameters": {"colour": "red"}}
    response = await api.post(f"{API}/projects/p/schedules", json=undeclared, headers=admin)
    assert response.status_code == 422
    assert "undeclared parameters: colour" in response.json()["detail"]

    # PATCH keeps the pipeline; switching to a job clears it explicitly.
    patched = await api.patch(
        f"{API}/projects/p/schedules/nightly", json={"display_name": "Nightly"}, headers=admin
    )
    assert patched.json()["pipeline"] == "release"
    refused = await api.delete(f"{API}/projects/p/pipelines/release", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "pipeline 'release' is triggered by schedule 'nightly'"
    switched = await api.patch(
        f"{API}/projects/p/schedules/nightly",
        json={"job": "publish", "pipeline": None, "parameters": {}},
        headers=admin,
    )
    assert switched.status_code == 200, switched.text
    assert (switched.json()["job"], switched.json()["pipeline"]) == ("publish", None)
    assert (await api.delete(f"{API}/projects/p/pipelines/release", headers=admin)).is_success


async def test_apply_stores_pipelines_idempotently_and_checks_them_against_the_jobs(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = auth(await make_user("admin", ["administrator"]))
    document = load_document(EXAMPLE)
    document["projects"][0]["schedules"].append(
        {"identifier": "weekly", "pipeline": "release", "expression": "@weekly"}
    )
    first = await api.post(f"{API}/apply", json=document, headers=admin)
    assert first.status_code == 200, first.text
    actions = {(c["kind"], c["identifier"]): c["action"] for c in first.json()["changes"]}
    assert actions[("pipeline", "example/release")] == "created"
    assert actions[("schedule", "example/weekly")] == "created"
    stored = (await api.get(f"{API}/projects/example/pipelines/release", headers=admin)).json()
    second = await api.post(f"{API}/apply", json=document, headers=admin)
    assert {c["action"] for c in second.json()["changes"]} == {"unchanged"}
    again = (await api.get(f"{API}/projects/example/pipelines/release", headers=admin)).json()
    assert again == stored
    weekly = (await api.get(f"{API}/projects/example/schedules/weekly", headers=admin)).json()
    assert (weekly["job"], weekly["pipeline"]) == (None, "release")

    # A pipeline may run a job stored before, not in the document.
    document["projects"][0]["jobs"] = [
        j for j in document["projects"][0]["jobs"] if j["identifier"] != "build"
    ]
    assert (await api.post(f"{API}/apply", json=document, headers=admin)).status_code == 200

    broken = copy.deepcopy(document)
    broken["projects"][0]["pipelines"][0]["nodes"][0]["job"] = "ghost"
    broken["projects"][0]["pipelines"][0]["description"] = "not stored"
    refused = await api.post(f"{API}/apply", json=broken, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "pipeline 'release': node 'build': no job 'ghost' in this project"
    )
    kept = (await api.get(f"{API}/projects/example/pipelines/release", headers=admin)).json()
    assert kept["description"] == stored["description"]

    unknown = copy.deepcopy(document)
    unknown["projects"][0]["schedules"][-1]["pipeline"] = "nope"
    refused = await api.post(f"{API}/apply", json=unknown, headers=admin)
    assert refused.status_code == 422
    assert "pipeline 'nope' is not defined in this project's pipelines" in refused.json()["detail"]


@pytest.fixture
async def site(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def site_login(site: httpx.AsyncClient, user: str) -> None:
    site.cookies.clear()
    page = await site.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {"user": user, "password": "a password 1", "csrf_token": token.group(1)}
    assert (await site.post("/login", data=form)).status_code == 303


async def test_the_pipeline_page_draws_every_node_and_arrow_and_escapes_names(
    site: httpx.AsyncClient, services: Services, admin: dict[str, str]
) -> None:
    await services.users.create_user("boss", roles=["administrator"], password="a password 1")
    await services.users.create_user("reader", roles=["viewer"], password="a password 1")
    shown = copy.deepcopy(RELEASE)
    shown["display_name"] = "<b>Release</b> & co"
    shown["description"] = "<script>alert(1)</script>"
    shown["nodes"][0]["parameters"] = {"version": "<i>{parameters[version]}</i>"}
    await services.pipelines.create_pipeline("p", shown)
    await services.projects.create_schedule(
        "p", {"identifier": "nightly", "pipeline": "release", "expression": "@daily"}
    )
    await site_login(site, "boss")

    page = await site.get("/projects/p/pipelines/release")

    assert page.status_code == 200
    html = page.text
    assert "<svg" in html
    drawn = re.findall(r'<g class="pipeline-node[^"]*" data-node="([^"]+)"', html)
    assert sorted(drawn) == sorted(n["identifier"] for n in RELEASE["nodes"])
    arrows = set(re.findall(r'class="pipeline-edge" data-from="([^"]+)" data-to="([^"]+)"', html))
    assert arrows == {
        (need, n["identifier"]) for n in RELEASE["nodes"] for need in n.get("needs", [])
    }
    assert len(arrows) == 6
    assert 'class="pipeline-node node-approval" data-node="approve"' in html
    assert "&lt;b&gt;Release&lt;/b&gt; &amp; co" in html and "<b>Release</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "version=&lt;i&gt;{parameters[version]}&lt;/i&gt;" in html
    assert 'action="/projects/p/pipelines/release/trigger"' in html
    assert 'href="/projects/p/pipeline-runs?pipeline=release"' in html
    assert 'name="csrf_token"' in html

    project = await site.get("/projects/p")
    assert 'href="/projects/p/pipelines/release"' in project.text
    assert "&lt;b&gt;Release&lt;/b&gt; &amp; co" in project.text
    schedule = await site.get("/projects/p/schedules/nightly")
    assert 'href="/projects/p/pipelines/release"' in schedule.text

    await site_login(site, "reader")
    read_only = await site.get("/projects/p/pipelines/release")
    assert read_only.status_code == 200
    assert 'data-node="publish"' in read_only.text
    assert "/trigger" not in read_only.text  # a viewer may not trigger: no form
    missing = await site.get("/projects/p/pipelines/nope")
    assert missing.status_code == 404
