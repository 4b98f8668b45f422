"""Webhooks in (docs/events.md), in process on both engines: signed deliveries of each scheme
(good, wrong and missing signatures, Standard Webhooks' window), replays, filters, parameters
from paths, pipelines, the audit log, pruning, and two API servers on one database (concurrent
replays, a webhook changed on one seen at once by the other). The definitions:
test_webhook_definitions.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from orchestra.services.container import Services
from orchestra.storage.schema import audit_event, webhook_delivery
from orchestra.storage.schema import run as run_table
from orchestra.web.app import create_app
from tests.conftest import MakeUser, build_services
from tests.helpers import RecordingClient, auth
from tests.support.webhooks import (
    SECRET,
    STANDARD_SECRET,
    body_of,
    github_headers,
    gitlab_headers,
    signed,
    standard_headers,
)

API = "/api/v1"
SCHEMES = ("github", "gitlab", "standard")
JOB: dict[str, Any] = {
    "steps": [{"name": "a", "command": ["echo", "{parameters[ref]}"]}],
    "parameters": [
        {"key": "ref", "default": "none"},
        {"key": "sha", "default": "none"},
        {"key": "count", "default": "0"},
        {"key": "absent", "default": "the default"},
    ],
}
HOOK = {
    "parameters": {
        "ref": "ref",
        "sha": "commits.1.id",
        "count": "repository.stats",
        "absent": "no.such.path",
    },
    "filter": {"ref": "^refs/heads/(main|release-.*)$"},
}
PUSH = {
    "ref": "refs/heads/main",
    "commits": [{"id": "aaa"}, {"id": "bbb"}],
    "repository": {"full_name": "o/r", "stats": {"stars": 3, "forks": [1, 2]}},
}


def secret_of(scheme: str) -> str:
    return STANDARD_SECRET if scheme == "standard" else SECRET


async def setup(api: RecordingClient, admin: dict[str, str], scheme: str) -> None:
    assert (await api.put(f"{API}/projects/p", json={}, headers=admin)).status_code == 201
    hook = {**HOOK, "secret": secret_of(scheme), "signature": scheme}
    put = await api.put(f"{API}/projects/p/jobs/j", json={**JOB, "webhook": hook}, headers=admin)
    assert put.status_code == 201, put.text
    assert put.json()["webhook"]["secret"] == "***"


async def deliver(
    api: RecordingClient, payload: Any, headers: dict[str, str], path: str = "jobs/j"
) -> httpx.Response:
    return await api.post(f"{API}/webhooks/p/{path}", content=body_of(payload), headers=headers)


@pytest.fixture
async def admin(make_user: MakeUser) -> dict[str, str]:
    return auth(await make_user("admin", ["administrator"]))


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_signed_delivery_starts_a_run_with_parameters_from_paths(
    api: RecordingClient, admin: dict[str, str], services: Services, scheme: str
) -> None:
    await setup(api, admin, scheme)
    body = body_of(PUSH)
    headers = signed(scheme, secret_of(scheme), body, delivery="d-1")
    started = await api.post(f"{API}/webhooks/p/jobs/j", content=body, headers=headers)
    assert started.status_code == 201, started.text
    run = (await api.get(f"{API}/projects/p/runs/{started.json()['run']}", headers=admin)).json()
    assert run["parameters"] == {
        "ref": "refs/heads/main",
        "sha": "bbb",
        "count": '{"stars":3,"forks":[1,2]}',
        "absent": "the default",
    }
    event = {"github": "push", "gitlab": "Push Hook", "standard": None}[scheme]
    assert run["source"] == {"type": "webhook", "delivery": "d-1", "event": event}

    # The same delivery again (a retry, a replay): nothing new, the first run named.
    again = await api.post(f"{API}/webhooks/p/jobs/j", content=body, headers=headers)
    assert again.status_code == 200 and again.json() == started.json()
    async with services.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(run_table)) == 1
        audit = (await conn.execute(sa.select(audit_event))).mappings().all()
    lines = [a for a in audit if a["actor"] == "webhook"]
    assert [(a["status"], a["path"]) for a in lines] == [(201, f"{API}/webhooks/p/jobs/j")]


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_wrong_or_missing_signature_is_401_and_starts_nothing(
    api: RecordingClient, admin: dict[str, str], services: Services, scheme: str
) -> None:
    await setup(api, admin, scheme)
    body = body_of(PUSH)
    wrong_secret = ("whsec_" + "QUJD" * 8) if scheme == "standard" else "another-secret-0123456"
    wrong = signed(scheme, wrong_secret, body)
    assert (await deliver(api, PUSH, wrong)).status_code == 401
    tampered = signed(scheme, secret_of(scheme), body)
    changed = await api.post(f"{API}/webhooks/p/jobs/j", content=body + b" ", headers=tampered)
    # GitLab's token signs no body: a changed body with the right token is accepted.
    assert changed.status_code == (201 if scheme == "gitlab" else 401), changed.text
    missing = {"Content-Type": "application/json"}
    refused = await deliver(api, PUSH, missing)
    assert refused.status_code == 401 and "no " in refused.json()["detail"]
    async with services.db.read() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(run_table))
    assert count == (1 if scheme == "gitlab" else 0)


async def test_standard_webhooks_refuse_a_stale_or_future_timestamp(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    await setup(api, admin, "standard")
    body = body_of(PUSH)
    for offset in (-301, 400):
        headers = standard_headers(STANDARD_SECRET, body, timestamp=time.time() + offset)
        refused = await deliver(api, PUSH, headers)
        assert refused.status_code == 401, refused.text
        assert "timestamp" in refused.json()["detail"]
    inside = standard_headers(STANDARD_SECRET, body, timestamp=time.time() - 200)
    assert (await deliver(api, PUSH, inside)).status_code == 201
    # A plain secret (not whsec_) is used as its UTF-8 bytes.
    hook = {"secret": "plain-standard-secret", "signature": "standard"}
    await api.patch(f"{API}/projects/p/jobs/j", json={"webhook": hook}, headers=admin)
    plain = standard_headers("plain-standard-secret", body)
    assert (await deliver(api, PUSH, plain)).status_code == 201
    malformed = {**plain, "webhook-signature": "v1", "webhook-id": "x2"}
    assert (await deliver(api, PUSH, malformed)).status_code == 401


async def test_filters_that_do_not_hold_answer_202(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    await setup(api, admin, "github")
    payloads: list[Any] = [{**PUSH, "ref": "refs/heads/feature"}, {"commits": []}, [1, 2]]
    for payload in payloads:
        body = body_of(payload)
        skipped = await api.post(
            f"{API}/webhooks/p/jobs/j", content=body, headers=github_headers(SECRET, body)
        )
        assert skipped.status_code == 202, skipped.text
        assert skipped.json()["run"] is None
    release = {**PUSH, "ref": "refs/heads/release-2"}
    body = body_of(release)
    headers = github_headers(SECRET, body)
    ran = await api.post(f"{API}/webhooks/p/jobs/j", content=body, headers=headers)
    assert ran.status_code == 201


async def test_unknown_targets_bad_bodies_and_sizes(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    await setup(api, admin, "github")
    await api.put(f"{API}/projects/p/jobs/plain", json=JOB, headers=admin)
    body = body_of(PUSH)
    headers = github_headers(SECRET, body)
    for path in ("jobs/nope", "jobs/plain", "pipelines/j"):
        missing = await deliver(api, PUSH, headers, path)
        assert missing.status_code == 404, missing.text
    elsewhere = await api.post(f"{API}/webhooks/q/jobs/j", content=body, headers=headers)
    assert elsewhere.status_code == 404
    not_json = b"ref=main"
    refused = await api.post(
        f"{API}/webhooks/p/jobs/j", content=not_json, headers=github_headers(SECRET, not_json)
    )
    assert refused.status_code == 422 and "JSON" in refused.json()["detail"]
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = await api.post(
        f"{API}/webhooks/p/jobs/j", content=deep, headers=github_headers(SECRET, deep)
    )
    assert nested.status_code == 422
    large = b'{"ref": "' + b"x" * (1024 * 1024) + b'"}'
    too_large = await api.post(
        f"{API}/webhooks/p/jobs/j", content=large, headers=github_headers(SECRET, large)
    )
    assert too_large.status_code == 413
    odd_id = github_headers(SECRET, body, delivery="x" * 201)
    assert (await deliver(api, PUSH, odd_id)).status_code == 422
    async with services.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(run_table)) == 0


async def test_a_missing_parameter_without_default_is_refused(
    api: RecordingClient, admin: dict[str, str]
) -> None:
    await api.put(f"{API}/projects/p", json={}, headers=admin)
    job = {
        "steps": [{"command": ["true"]}],
        "parameters": [{"key": "ref"}],
        "webhook": {"secret": SECRET, "signature": "gitlab", "parameters": {"ref": "ref"}},
    }
    assert (await api.put(f"{API}/projects/p/jobs/j", json=job, headers=admin)).status_code == 201
    refused = await deliver(api, {"other": 1}, gitlab_headers(SECRET))
    assert refused.status_code == 422 and "ref" in refused.json()["detail"]
    assert (await deliver(api, {"ref": "main"}, gitlab_headers(SECRET))).status_code == 201


async def test_a_pipeline_webhook_starts_a_pipeline_run(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    await api.put(f"{API}/projects/p", json={}, headers=admin)
    await api.put(f"{API}/projects/p/jobs/j", json=JOB, headers=admin)
    pipeline = {
        "parameters": [{"key": "branch", "default": "x"}],
        "nodes": [{"identifier": "one", "job": "j", "parameters": {"ref": "{parameters[branch]}"}}],
        "webhook": {"secret": SECRET, "signature": "github", "parameters": {"branch": "ref"}},
    }
    put = await api.put(f"{API}/projects/p/pipelines/pl", json=pipeline, headers=admin)
    assert put.status_code == 201, put.text
    assert put.json()["webhook"]["secret"] == "***"
    body = body_of(PUSH)
    headers = github_headers(SECRET, body, delivery="pd-1")
    started = await api.post(f"{API}/webhooks/p/pipelines/pl", content=body, headers=headers)
    assert started.status_code == 201, started.text
    identifier = started.json()["pipeline_run"]
    shown = (await api.get(f"{API}/projects/p/pipeline-runs/{identifier}", headers=admin)).json()
    assert shown["parameters"] == {"branch": "refs/heads/main"}
    assert shown["source"] == {"type": "webhook", "delivery": "pd-1", "event": "push"}
    again = await api.post(f"{API}/webhooks/p/pipelines/pl", content=body, headers=headers)
    assert again.status_code == 200 and again.json() == {"pipeline_run": identifier}
    # A disabled pipeline refuses deliveries as it refuses triggers.
    await api.patch(f"{API}/projects/p/pipelines/pl", json={"is_enabled": False}, headers=admin)
    disabled = await deliver(api, PUSH, github_headers(SECRET, body), "pipelines/pl")
    assert disabled.status_code == 409


@pytest.fixture
async def second_api(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Another API server on the same database, with the same instance key."""
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "secret.key").write_bytes((tmp_path / "secret.key").read_bytes())
    other = build_services(database_url, tmp_path / "second")
    transport = httpx.ASGITransport(app=create_app(other))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await other.close()


async def test_concurrent_replays_through_two_servers_start_one_run(
    api: RecordingClient,
    admin: dict[str, str],
    services: Services,
    second_api: httpx.AsyncClient,
) -> None:
    await setup(api, admin, "standard")
    body = body_of(PUSH)
    headers = standard_headers(STANDARD_SECRET, body, delivery="msg_once")
    url = f"{API}/webhooks/p/jobs/j"
    answers = await asyncio.gather(
        *(
            (api.http if n % 2 else second_api).post(url, content=body, headers=headers)
            for n in range(20)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 19 + [201], [a.text for a in answers]
    assert len({a.json()["run"] for a in answers}) == 1
    async with services.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(run_table)) == 1
        assert await conn.scalar(sa.select(sa.func.count()).select_from(webhook_delivery)) == 1


async def test_old_deliveries_are_pruned_after_a_day(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    await setup(api, admin, "gitlab")
    assert (await deliver(api, PUSH, gitlab_headers(SECRET, "old"))).status_code == 201
    async with services.db.transaction() as conn:
        await conn.execute(
            webhook_delivery.update().values(
                creation_date=services.clock.now() - timedelta(hours=25)
            )
        )
    assert (await deliver(api, PUSH, gitlab_headers(SECRET, "new"))).status_code == 201
    assert await services.webhooks.prune() == 1
    async with services.db.read() as conn:
        kept = (await conn.execute(sa.select(webhook_delivery.c.delivery))).scalars().all()
    assert kept == ["new"]


async def test_a_webhook_changed_on_another_server_holds_at_once(
    api: RecordingClient,
    admin: dict[str, str],
    services: Services,
    second_api: httpx.AsyncClient,
) -> None:
    await setup(api, admin, "github")
    body = body_of(PUSH)
    assert (await deliver(api, PUSH, github_headers(SECRET, body))).status_code == 201
    url = f"{API}/projects/p/jobs/j"
    new = {"signature": "github", "secret": "a-new-secret-0123456789"}
    assert (await second_api.patch(url, json={"webhook": new}, headers=admin)).status_code == 200
    # This server read the webhook a moment ago: the old secret is refused all the same, and
    # the new one accepted.
    assert (await deliver(api, PUSH, github_headers(SECRET, body))).status_code == 401
    fresh = github_headers(new["secret"], body)
    assert (await deliver(api, PUSH, fresh)).status_code == 201
    mapped = {**new, "parameters": {"ref": "repository.full_name"}}
    await second_api.patch(url, json={"webhook": mapped}, headers=admin)
    started = await deliver(api, PUSH, github_headers(new["secret"], body))
    assert started.status_code == 201
    run = await api.get(f"{API}/projects/p/runs/{started.json()['run']}", headers=admin)
    assert run.json()["parameters"]["ref"] == "o/r"
    filtered = {**new, "filter": {"ref": "^never$"}}
    await second_api.patch(url, json={"webhook": filtered}, headers=admin)
    assert (await deliver(api, PUSH, github_headers(new["secret"], body))).status_code == 202
    await second_api.patch(url, json={"webhook": None}, headers=admin)
    assert (await deliver(api, PUSH, github_headers(new["secret"], body))).status_code == 404
    async with services.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(run_table)) == 3
