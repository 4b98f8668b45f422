"""Re-run (issue 24) through the API and the website: the new run holds the old run's values,
a secret one as the same ciphertext, never shown; only a final run is re-run; the website's
button is a form with its CSRF token, offered to those who may trigger."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from orchestra.server import build_app
from orchestra.services.container import Services
from orchestra.storage import runs as run_storage
from tests.helpers import RecordingClient, auth

API = "/api/v1"
PASSWORD = "a password 1"
SECRET = "the-secret-value-31f"
JOB = {
    "identifier": "j",
    "parameters": [{"key": "token", "secret": True}, {"key": "color", "default": "blue"}],
    "steps": [{"name": "s", "command": ["echo", "{parameters[color]}"]}],
}


@pytest.fixture
async def site(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def form_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


async def login(site: httpx.AsyncClient, user: str) -> None:
    page = await site.get("/login")
    form = {"user": user, "password": PASSWORD, "csrf_token": form_token(page)}
    assert (await site.post("/login", data=form)).status_code == 303


async def final_run(services: Services) -> str:
    run = await services.runs.trigger("p", "j", {"token": SECRET, "color": "red"}, {"type": "test"})
    await services.runs.cancel("p", run.identifier)
    return run.identifier


async def test_rerun_through_the_api_copies_the_values_and_refuses_a_run_not_final(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("admin", roles=["administrator"])
    _token, secret = await services.users.create_token("admin", "test", None)
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", JOB)
    old = await final_run(services)

    answer = await api.post(f"{API}/projects/p/runs/{old}/rerun", headers=auth(secret))
    assert answer.status_code == 201, answer.text
    new = answer.json()
    assert new["status"] == "pending"
    assert new["source"] == {"type": "rerun", "run": old}
    assert new["parameters"] == {"token": "***", "color": "red"}
    assert SECRET not in answer.text
    async with services.db.read() as conn:
        before = await run_storage.get_run(conn, old)
        after = await run_storage.get_run(conn, new["identifier"])
    assert before is not None and after is not None
    assert after.parameters == before.parameters  # the same ciphertext
    assert services.keyring.decrypt(after.parameters["token"], "parameter") == SECRET

    pending = await api.post(
        f"{API}/projects/p/runs/{new['identifier']}/rerun", headers=auth(secret)
    )
    assert pending.status_code == 409
    assert pending.json()["detail"] == "only a final run can be re-run; this one is pending"
    missing = await api.post(f"{API}/projects/p/runs/{'0' * 8}/rerun", headers=auth(secret))
    assert missing.status_code == 404

    # A job that no longer takes the run's parameters: a 409 that says so.
    await services.projects.patch_job(
        "p", "j", {"parameters": [{"key": "color"}], "steps": [{"name": "s", "command": ["true"]}]}
    )
    changed = await api.post(f"{API}/projects/p/runs/{old}/rerun", headers=auth(secret))
    assert changed.status_code == 409
    assert changed.json()["detail"].startswith("the job changed since this run")
    assert SECRET not in changed.text


async def test_the_website_rerun_button_is_a_form_for_those_who_may_trigger(
    services: Services, site: httpx.AsyncClient
) -> None:
    await services.users.create_user("admin", roles=["administrator"], password=PASSWORD)
    await services.users.create_user("vera", roles=["viewer"], password=PASSWORD)
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", JOB)
    old = await final_run(services)

    await login(site, "admin")
    page = await site.get(f"/projects/p/runs/{old}")
    assert re.search(r'id="rerun-form"(?! hidden)', page.text), page.text
    assert SECRET not in page.text
    refused = await site.post(f"/projects/p/runs/{old}/rerun", data={"csrf_token": "x"})
    assert refused.status_code == 403
    assert len((await services.runs.list_runs("p"))[0]) == 1  # no CSRF token, no run
    done = await site.post(f"/projects/p/runs/{old}/rerun", data={"csrf_token": form_token(page)})
    assert done.status_code == 303
    runs, _ = await services.runs.list_runs("p")
    new = next(r for r in runs if r.identifier != old)
    assert done.headers["location"].startswith(f"/projects/p/runs/{new.identifier}?message=")
    assert new.source == {"type": "rerun", "run": old}

    pending_page = await site.get(f"/projects/p/runs/{new.identifier}")
    assert 'id="rerun-form" hidden' in pending_page.text  # shown once the run is final
    not_final = await site.post(
        f"/projects/p/runs/{new.identifier}/rerun", data={"csrf_token": form_token(pending_page)}
    )
    assert not_final.status_code == 303 and "error=" in not_final.headers["location"]

    site.cookies.clear()
    await login(site, "vera")
    viewer_page = await site.get(f"/projects/p/runs/{old}")
    assert viewer_page.status_code == 200
    assert "rerun-form" not in viewer_page.text
