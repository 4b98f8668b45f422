"""Notifications out, in process on both engines: pipeline and approval events, a schedule's
skipped firing, e-mail through a real SMTP server (aiosmtpd), `notifications:` in an applied
document, the website's pages (CSRF, escaping, operators only) and the key rotation."""

from __future__ import annotations

import email
import json
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from orchestra.domain.models import RunStatus
from orchestra.notify_settings import NotifySettings, parse_smtp
from orchestra.server import build_app
from orchestra.services.container import Services
from orchestra.services.key_rotation import reencrypt_all
from orchestra.services.keyring import Keyring, new_key
from orchestra.services.notification_relay import NotificationRelay
from orchestra.services.notification_sender import NotificationSender
from orchestra.services.notifications import NotificationService, secret_context
from orchestra.storage.schema import notification as notification_table
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth
from tests.support.notifications import API, JOB, SECRET, URL, drain, move, new_run, parts
from tests.support.processes import free_port
from tests.support.receiver import Receiver


@pytest.fixture
async def admin(api: RecordingClient, make_user: MakeUser) -> dict[str, str]:
    headers = auth(await make_user("admin", ["administrator"]))
    assert (await api.put(f"{API}/projects/p", json={}, headers=headers)).status_code == 201
    for job in ("j", "k"):
        put = await api.put(f"{API}/projects/p/jobs/{job}", json=JOB, headers=headers)
        assert put.status_code == 201, put.text
    return headers


async def test_pipeline_events_and_approval_waiting(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    nodes = [{"identifier": "ok", "approval": {"description": "Go?"}}]
    created = await api.post(
        f"{API}/projects/p/pipelines", json={"identifier": "g", "nodes": nodes}, headers=admin
    )
    assert created.status_code == 201, created.text
    with Receiver() as receiver:
        body = {
            "identifier": "pipes",
            "events": ["approval.waiting", "pipeline.succeeded", "pipeline.failed", "run.failed"],
            "pipelines": ["g"],
            "url": receiver.url,
        }
        assert (await api.post(URL, json=body, headers=admin)).status_code == 201
        relay, sender = parts(services)
        try:
            shown = await services.pipeline_runs.trigger("p", "g", {}, {"type": "api"})
            await services.pipeline_runs.advance(shown["identifier"])
            await drain(relay, sender)
            await services.pipeline_runs.decide(
                "p", shown["identifier"], "ok", approve=True, user="admin"
            )
            await drain(relay, sender)
        finally:
            await sender.close()
        got = [(r.json()["type"], r.json()["data"]["identifier"]) for r in receiver.accepted()]
        assert got == [
            ("approval.waiting", shown["identifier"]),
            ("pipeline.succeeded", shown["identifier"]),
        ]
        assert receiver.accepted()[1].json()["data"]["status"] == "succeeded"


async def test_email_goes_through_a_real_smtp_server(
    admin: dict[str, str], services: Services, tmp_path: Any
) -> None:

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope)
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = parse_smtp(f"smtp://127.0.0.1:{port}", "orchestra@example.test")
        settings = NotifySettings(first_retry=0.01, smtp=smtp)
        service = NotificationService(services.db, services.clock, services.keyring, settings)
        await service.create(
            "p", {"identifier": "mail", "events": ["run.failed"], "email": "ops@example.test"}
        )
        relay = NotificationRelay(services.db, services.clock, services.events)
        sender = NotificationSender(services.db, services.clock, services.keyring, settings, "t")
        try:
            run = await new_run(services)
            reason = "the disk is full\nSubject: forged"  # a header may not hold a newline
            await move(services, run, RunStatus.RUNNING, RunStatus.FAILED, reason=reason)
            await drain(relay, sender)
        finally:
            await sender.close()
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    assert envelope.rcpt_tos == ["ops@example.test"]
    assert envelope.mail_from == "orchestra@example.test"
    text = envelope.content.decode()
    assert "Subject: [Orchestra] Failed (failed)" in text and run in text

    parsed = email.message_from_bytes(envelope.content)
    assert len(parsed.get_all("Subject")) == 1
    assert "the disk is full Subject: forged" in parsed["Subject"]
    items, _ = await service.deliveries("p", "mail", None, None)
    assert [d["status"] for d in items] == ["delivered"]


async def test_apply_creates_notifications_idempotently_secret_sealed(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    document = {
        "projects": [
            {
                "identifier": "p",
                "notifications": [
                    {
                        "identifier": "ci",
                        "events": ["run.failed", "run.fixed"],
                        "jobs": ["j"],
                        "url": "https://hooks.example.test/ci",
                        "secret": SECRET,
                    }
                ],
            }
        ]
    }
    first = await api.post(f"{API}/apply", json=document, headers=admin)
    assert first.status_code == 200, first.text
    assert "created" in first.text
    second = await api.post(f"{API}/apply", json=document, headers=admin)
    assert second.status_code == 200
    changes = second.json()["changes"] if "changes" in second.json() else second.json()
    assert "notification" in json.dumps(changes) and "created" not in json.dumps(changes)
    shown = (await api.get(f"{URL}/ci", headers=admin)).json()
    assert shown["secret"] == "***" and shown["jobs"] == ["j"]
    bad = {"projects": [{"identifier": "p", "notifications": [{"identifier": "x"}]}]}
    refused = await api.post(f"{API}/apply", json=bad, headers=admin)
    assert refused.status_code in (400, 422) and "notifications[0]" in refused.text


async def test_schedule_skipped_by_its_overlap_policy_is_sent(
    clocked_services: Services, clock: Any
) -> None:
    services = clocked_services
    document = {
        "projects": [
            {
                "identifier": "p",
                "jobs": [{"identifier": "j", **JOB}],
                "schedules": [{"identifier": "s", "job": "j", "expression": "* * * * *"}],
            }
        ]
    }
    await services.apply.apply(document)
    with Receiver() as receiver:
        await services.notifications.create(
            "p", {"identifier": "skips", "events": ["schedule.skipped"], "url": receiver.url}
        )
        relay, sender = parts(services)
        try:
            for _ in range(3):  # fires once; then the run, never taken, is still pending
                clock.advance(61)
                await services.scheduler.tick()
            await drain(relay, sender)
        finally:
            await sender.close()
        got = receiver.accepted()
        assert [r.json()["type"] for r in got] == ["schedule.skipped", "schedule.skipped"]
        data = got[0].json()["data"]
        assert data["identifier"] == "s" and data["job"] == "j"
        assert "still pending or running" in data["last_skip_reason"]


# The website.


async def test_website_manages_notifications_with_csrf_and_shows_deliveries(
    services: Services,
) -> None:

    password = "a password for the site 1"
    await services.users.create_user("admin", roles=["administrator"], password=password)
    await services.users.create_user("viewer", roles=["viewer"], password=password)
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", {"identifier": "j", **JOB})

    def token(page: httpx.Response) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found is not None, page.text[:500]
        return found.group(1)

    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as site:
        login = await site.get("/login")
        form = {"user": "admin", "password": password, "csrf_token": token(login)}
        assert (await site.post("/login", data=form)).status_code == 303
        page = await site.get("/projects/p/notifications")
        assert page.status_code == 200 and "No notifications" in page.text
        hostile = "https://x.test/<script>alert(1)</script>"
        form = {
            "identifier": "ops",
            "events": ["run.failed", "run.fixed"],
            "target": "url",
            "address": hostile,
            "format": "slack",
            "secret": "site-secret-value",
        }
        refused = await site.post("/projects/p/notifications", data=form)
        assert refused.status_code == 403  # no CSRF token
        saved = await site.post(
            "/projects/p/notifications", data={**form, "csrf_token": token(page)}
        )
        assert saved.status_code == 303 and "created" in saved.headers["location"]
        listed = await site.get("/projects/p/notifications")
        assert "<script>alert" not in listed.text and "&lt;script&gt;" in listed.text
        assert "site-secret-value" not in listed.text
        shown = await site.get("/projects/p/notifications/ops")
        assert shown.status_code == 200 and "Nothing sent yet" in shown.text
        assert "site-secret-value" not in shown.text
        bad = await site.post(
            "/projects/p/notifications",
            data={**form, "identifier": "x", "address": "ftp://x", "csrf_token": token(page)},
        )
        assert bad.status_code == 303 and "error=" in bad.headers["location"]
        disabled = await site.post(
            "/projects/p/notifications/ops/state",
            data={"is_enabled": "false", "csrf_token": token(page)},
        )
        assert disabled.status_code == 303
        assert (await services.notifications.get("p", "ops"))["is_enabled"] is False
        deleted = await site.post(
            "/projects/p/notifications/ops/delete", data={"csrf_token": token(page)}
        )
        assert deleted.status_code == 303
        assert (await site.get("/projects/p/notifications/ops")).status_code == 404

        await site.post("/logout", data={"csrf_token": token(page)})
        login = await site.get("/login")
        form = {"user": "viewer", "password": password, "csrf_token": token(login)}
        assert (await site.post("/login", data=form)).status_code == 303
        assert (await site.get("/projects/p/notifications")).status_code == 403


async def test_key_rotation_reencrypts_notification_secrets(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:

    body = {"identifier": "n", "events": ["run.failed"], "url": "https://x.test/", "secret": SECRET}
    assert (await api.post(URL, json=body, headers=admin)).status_code == 201
    rotated = Keyring([new_key(), *services.keyring.keys])
    report = await reencrypt_all(services.db, rotated)
    assert report.reencrypted.get("notification") == 1 and report.complete
    async with services.db.read() as conn:
        stored = await conn.scalar(sa.select(notification_table.c.secret))
    assert rotated.key_of(stored) == rotated.current_id
    assert rotated.decrypt(stored, secret_context("p", "n")) == SECRET
