"""A job's and a pipeline's `webhook` definition (docs/events.md, "Webhooks in"), in process on
both engines: its secret write-only and stored encrypted (apply, PUT and PATCH keep it), the
checks that refuse a bad one with a 422 naming the field, the website's pages, key rotation."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from orchestra.server import build_app
from orchestra.services.container import Services
from orchestra.services.key_rotation import reencrypt_all
from orchestra.services.keyring import Keyring, new_key
from orchestra.services.webhook_secrets import webhook_context
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import pipeline as pipeline_table
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth
from tests.integration.test_secrets import database_text
from tests.integration.test_webhooks import API, HOOK, JOB, PUSH, deliver, setup
from tests.support.webhooks import SECRET, body_of, github_headers


@pytest.fixture
async def admin(make_user: MakeUser) -> dict[str, str]:
    return auth(await make_user("admin", ["administrator"]))


async def test_the_secret_is_write_only_and_stored_encrypted(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    await setup(api, admin, "github")
    url = f"{API}/projects/p/jobs/j"
    assert (await api.get(url, headers=admin)).json()["webhook"]["secret"] == "***"
    listed = (await api.get(f"{API}/projects/p/jobs", headers=admin)).json()["items"]
    assert listed[0]["webhook"] == {
        "secret": "***",
        "signature": "github",
        "parameters": HOOK["parameters"],
        "filter": HOOK["filter"],
    }
    async with services.db.read() as conn:
        stored = dict(await conn.scalar(sa.select(job_table.c.webhook)) or {})
    assert stored["secret"].startswith("enc:v1:")
    assert SECRET not in await database_text(services)

    # "***", or a PATCH leaving the secret out, keeps it; the same secret keeps its ciphertext.
    kept = {"signature": "github", "secret": "***"}
    assert (await api.patch(url, json={"webhook": kept}, headers=admin)).status_code == 200
    left_out = {"signature": "github", "filter": {"ref": "main"}}
    assert (await api.patch(url, json={"webhook": left_out}, headers=admin)).status_code == 200
    assert (await api.patch(url, json={"description": "x"}, headers=admin)).status_code == 200
    same = {"signature": "github", "secret": SECRET, "filter": {"ref": "main"}}
    assert (await api.put(url, json={**JOB, "webhook": same}, headers=admin)).status_code == 200
    async with services.db.read() as conn:
        again = dict(await conn.scalar(sa.select(job_table.c.webhook)) or {})
    assert again["secret"] == stored["secret"]
    body = body_of(PUSH)
    assert (await deliver(api, PUSH, github_headers(SECRET, body))).status_code == 201

    # A new secret replaces it; none removes the webhook.
    new = {"signature": "github", "secret": "a-new-secret-0123456789"}
    assert (await api.patch(url, json={"webhook": new}, headers=admin)).status_code == 200
    assert (await deliver(api, PUSH, github_headers(SECRET, body))).status_code == 401
    removed = await api.patch(url, json={"webhook": None}, headers=admin)
    assert removed.status_code == 200 and removed.json()["webhook"] is None
    assert (await deliver(api, PUSH, github_headers(SECRET, body))).status_code == 404

    # Apply: the same document twice changes nothing the second time.
    document = {
        "projects": [
            {
                "identifier": "p",
                "jobs": [
                    {
                        "identifier": "a",
                        **JOB,
                        "webhook": {**HOOK, "secret": SECRET, "signature": "gitlab"},
                    }
                ],
                "pipelines": [
                    {
                        "identifier": "pl",
                        "nodes": [{"identifier": "one", "job": "a"}],
                        "webhook": {"secret": SECRET, "signature": "github"},
                    }
                ],
            }
        ]
    }
    first = await api.post(f"{API}/apply", json=document, headers=admin)
    assert first.status_code == 200, first.text
    second = (await api.post(f"{API}/apply", json=document, headers=admin)).json()
    assert all(c["action"] == "unchanged" for c in second["changes"]), second
    assert len(second["changes"]) == 3
    body = body_of(PUSH)
    piped = await deliver(api, PUSH, github_headers(SECRET, body), "pipelines/pl")
    assert piped.status_code == 201, piped.text
    assert SECRET not in await database_text(services)


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        ({"secret": SECRET, "signature": "bitbucket"}, "webhook.signature"),
        ({"secret": "short", "signature": "github"}, "webhook.secret"),
        ({"secret": "whsec_!!notbase64!!", "signature": "standard"}, "webhook.secret"),
        ({"signature": "github"}, "webhook.secret"),
        ({"secret": SECRET, "signature": "github", "other": 1}, "other"),
        (
            {"secret": SECRET, "signature": "github", "filter": {"ref": "(unclosed"}},
            "webhook.filter.ref",
        ),
        (
            {"secret": SECRET, "signature": "github", "filter": {"ref": "x" * 501}},
            "webhook.filter.ref",
        ),
        ({"secret": SECRET, "signature": "github", "filter": {"a..b": "x"}}, "webhook.filter"),
        (
            {"secret": SECRET, "signature": "github", "parameters": {"nope": "ref"}},
            "webhook.parameters.nope",
        ),
        (
            {"secret": SECRET, "signature": "github", "parameters": {"ref": ""}},
            "webhook.parameters.ref",
        ),
    ],
)
async def test_bad_webhooks_are_refused_with_422_naming_the_field(
    api: RecordingClient,
    admin: dict[str, str],
    services: Services,
    hook: dict[str, Any],
    expected: str,
) -> None:
    await api.put(f"{API}/projects/p", json={}, headers=admin)
    refused = await api.put(
        f"{API}/projects/p/jobs/j", json={**JOB, "webhook": hook}, headers=admin
    )
    assert refused.status_code == 422, refused.text
    assert expected in refused.json()["detail"]
    assert SECRET not in refused.text


async def test_the_pages_show_the_webhook_and_its_url_never_its_secret(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    await setup(api, admin, "github")
    pipeline = {
        "nodes": [{"identifier": "one", "job": "j"}],
        "webhook": {"secret": SECRET, "signature": "standard", "filter": {"ref": "<b>x</b>"}},
    }
    put = await api.put(f"{API}/projects/p/pipelines/pl", json=pipeline, headers=admin)
    assert put.status_code == 201, put.text
    await services.users.create_user("boss", roles=["administrator"], password="a password 1")
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as site:
        page = await site.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        form = {"user": "boss", "password": "a password 1", "csrf_token": token.group(1)}
        assert (await site.post("/login", data=form)).status_code == 303
        job_page = (await site.get("/projects/p/jobs/j")).text
        pipeline_page = (await site.get("/projects/p/pipelines/pl")).text
    assert "github signature" in job_page
    assert "http://testserver/api/v1/webhooks/p/jobs/j" in job_page
    assert "standard signature" in pipeline_page
    assert "http://testserver/api/v1/webhooks/p/pipelines/pl" in pipeline_page
    assert "&lt;b&gt;x&lt;/b&gt;" in pipeline_page
    for html in (job_page, pipeline_page):
        assert SECRET not in html and "enc:v1:" not in html


async def test_a_key_rotation_reencrypts_webhook_secrets(services: Services) -> None:
    await services.projects.create_project({"identifier": "p"})
    hook = {"secret": SECRET, "signature": "github"}
    await services.projects.create_job("p", {"identifier": "j", **JOB, "webhook": hook})
    await services.pipelines.create_pipeline(
        "p", {"identifier": "pl", "nodes": [{"identifier": "one", "job": "j"}], "webhook": hook}
    )
    rotated = Keyring([new_key(), *services.keyring.keys])
    report = await reencrypt_all(services.db, rotated)
    assert report.complete and report.reencrypted["pipeline"] == 1
    async with services.db.read() as conn:
        hooks = [
            *(await conn.execute(sa.select(job_table.c.webhook))).scalars(),
            *(await conn.execute(sa.select(pipeline_table.c.webhook))).scalars(),
        ]
    for stored in hooks:
        assert rotated.key_of(stored["secret"]) == rotated.current_id
    assert [
        rotated.decrypt(h["secret"], webhook_context("p", kind, name))
        for h, kind, name in zip(hooks, ("job", "pipeline"), ("j", "pl"), strict=True)
    ] == [SECRET, SECRET]
