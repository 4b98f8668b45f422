"""A job's `environment` and `{secrets[NAME]}` through the API, apply and the website: accepted
and shown as written (templates, not values), copied to each run and to its retries, refused
with a 422 and a clear detail where they do not belong."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestra.domain.controls import retry_from_row
from orchestra.server import build_app
from orchestra.services.container import Services
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

API = "/api/v1"
STEP = {"name": "s", "command": ["echo", "{secrets[TOKEN]}"]}
ENVIRONMENT = {"API_TOKEN": "Bearer {secrets[TOKEN]}", "WHERE": "{workspace}/<b>&"}


@pytest.fixture
async def admin(make_user: MakeUser, services: Services) -> dict[str, str]:
    await services.projects.create_project({"identifier": "p"})
    return auth(await make_user("admin", ["administrator"]))


def job(**fields: Any) -> dict[str, Any]:
    return {"identifier": "j", "steps": [STEP], **fields}


async def test_a_job_environment_is_kept_shown_and_copied_to_runs_and_retries(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    created = await api.post(
        f"{API}/projects/p/jobs",
        json=job(environment=ENVIRONMENT, retry={"count": 1, "on": ["exception"]}),
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["environment"] == ENVIRONMENT
    patched = await api.patch(
        f"{API}/projects/p/jobs/j", json={"description": "kept"}, headers=admin
    )
    assert patched.json()["environment"] == ENVIRONMENT  # a PATCH without it keeps it
    shown = await api.get(f"{API}/projects/p/jobs/j", headers=admin)
    assert shown.json()["environment"] == ENVIRONMENT

    run = await services.runs.trigger("p", "j", {}, {"type": "api"})
    assert run.environment == ENVIRONMENT
    async with services.db.transaction() as conn:
        retry = retry_from_row(run.retry)
        assert retry is not None
        again = await services.runs.retry_in(conn, run, retry)
    assert again.environment == ENVIRONMENT

    cleared = await api.patch(f"{API}/projects/p/jobs/j", json={"environment": None}, headers=admin)
    assert cleared.json()["environment"] is None
    assert (await services.runs.trigger("p", "j", {}, {"type": "api"})).environment is None


async def test_apply_takes_a_job_environment(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    document = {"projects": [{"identifier": "p", "jobs": [job(environment=ENVIRONMENT)]}]}
    first = await api.post(f"{API}/apply", json=document, headers=admin)
    assert first.status_code == 200, first.text
    assert (await services.projects.get_job("p", "j")).environment == ENVIRONMENT
    second = await api.post(f"{API}/apply", json=document, headers=admin)
    assert {c["action"] for c in second.json()["changes"]} == {"unchanged"}
    bad = {"projects": [{"identifier": "p", "jobs": [job(environment={"ORCHESTRA_RUN": "x"})]}]}
    refused = await api.post(f"{API}/apply", json=bad, headers=admin)
    assert refused.status_code == 422 and "ORCHESTRA_RUN is reserved" in refused.json()["detail"]


REFUSED = [
    (job(environment={"ORCHESTRA_X": "1"}), "ORCHESTRA_X is reserved"),
    (job(environment={"orchestra_x": "1"}), "reserved"),
    (job(environment={"1BAD": "1"}), "variable name '1BAD'"),
    (job(environment={"A-B": "1"}), "variable name 'A-B'"),
    (job(environment={"": "1"}), "variable name ''"),
    (job(environment={f"V{i}": "x" for i in range(101)}), "more than 100 variables"),
    (job(environment={"BIG": "x" * (10 * 1024 + 1)}), "longer than 10240"),
    (job(environment={"NUL": "a\x00b"}), "contains NUL"),
    (job(environment={"V": "{parameters[nope]}"}), "undeclared parameter 'nope'"),
    (job(environment={"V": "{secrets.x}"}), "unknown field"),
    (job(environment={"V": "{secrets[1x]}"}), "does not name a secret"),
    (job(environment=["A=1"]), "environment"),
    (job(workspace="{secrets[TOKEN]}"), "allowed only in a job's steps' commands"),
    (job(workspace="ws/{secrets[TOKEN]}/x"), "allowed only in a job's steps' commands"),
    (job(steps=[{"name": "s", "command": ["echo", "{secrets[A-B]}"]}]), "does not name"),
    (job(steps=[{"name": "s", "command": ["echo", "{secrets[]}"]}]), "unknown field"),
    (job(steps=[{"name": "s", "command": ["echo", "{secrets[X][0]}"]}]), "unknown field"),
]


async def test_misplaced_or_malformed_environments_and_secret_fields_are_refused(
    api: RecordingClient, admin: dict[str, str]
) -> None:
    problems = []
    for body, expected in REFUSED:
        response = await api.post(f"{API}/projects/p/jobs", json=body, headers=admin)
        detail = response.json().get("detail")
        if response.status_code != 422 or not isinstance(detail, str) or expected not in detail:
            problems.append(f"{str(body)[:80]}: {response.status_code} {response.text[:300]}")
    assert problems == []
    listed = await api.get(f"{API}/projects/p/jobs", headers=admin)
    assert listed.json()["items"] == []
    put = await api.put(
        f"{API}/projects/p/jobs/j", json=job(environment={"ORCHESTRA_URL": "x"}), headers=admin
    )
    assert put.status_code == 422
    created = await api.post(f"{API}/projects/p/jobs", json=job(), headers=admin)
    assert created.status_code == 201
    patched = await api.patch(
        f"{API}/projects/p/jobs/j", json={"workspace": "{secrets[TOKEN]}"}, headers=admin
    )
    assert patched.status_code == 422


@pytest.fixture
async def site(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_job_page_shows_the_environment_as_written_and_escaped(
    site: httpx.AsyncClient, services: Services
) -> None:
    await services.users.create_user("admin", roles=["administrator"], password="a password 1")
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", job(environment=ENVIRONMENT))
    login = await site.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert token is not None
    form = {"user": "admin", "password": "a password 1", "csrf_token": token.group(1)}
    assert (await site.post("/login", data=form)).status_code == 303

    page = await site.get("/projects/p/jobs/j")

    assert page.status_code == 200
    assert "API_TOKEN=Bearer {secrets[TOKEN]}" in page.text
    assert "WHERE={workspace}/&lt;b&gt;&amp;" in page.text and "<b>&" not in page.text
