"""Notifications out, in process on both engines: the API (secrets write-only, bad input
refused, operators only), and the relay and sender against a real HTTP receiver: events from
the change log, signed, retried, in order per notification, run.fixed only on a change, ids
committed out of order."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from orchestra.domain.models import RunStatus
from orchestra.services.container import Services
from orchestra.services.notification_relay import NotificationRelay
from orchestra.storage import runs as run_storage
from orchestra.storage.schema import notification as notification_table
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth
from tests.support.notifications import API, JOB, SECRET, URL, drain, move, new_run, parts
from tests.support.receiver import Receiver


@pytest.fixture
async def admin(api: RecordingClient, make_user: MakeUser) -> dict[str, str]:
    headers = auth(await make_user("admin", ["administrator"]))
    assert (await api.put(f"{API}/projects/p", json={}, headers=headers)).status_code == 201
    for job in ("j", "k"):
        put = await api.put(f"{API}/projects/p/jobs/{job}", json=JOB, headers=headers)
        assert put.status_code == 201, put.text
    return headers


# The API.


async def test_notification_is_created_shown_changed_and_deleted_secret_never_shown(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    body = {"identifier": "ops", "events": ["run.failed", "run.fixed"], "url": "https://x.test/h"}
    created = await api.post(URL, json={**body, "secret": SECRET}, headers=admin)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["secret"] == "***"
    assert shown["format"] == "json" and shown["jobs"] is None and shown["email"] is None
    async with services.db.read() as conn:
        stored = await conn.scalar(sa.select(notification_table.c.secret))
    assert stored.startswith("enc:v1:") and SECRET not in stored

    again = await api.post(URL, json=body, headers=admin)
    assert again.status_code == 409
    put = await api.put(f"{URL}/ops", json={**body, "secret": "***", "jobs": ["j"]}, headers=admin)
    assert put.status_code == 200, put.text
    async with services.db.read() as conn:
        assert await conn.scalar(sa.select(notification_table.c.secret)) == stored  # kept
    patched = await api.patch(f"{URL}/ops", json={"format": "slack"}, headers=admin)
    assert patched.status_code == 200, patched.text
    assert patched.json()["secret"] == "***" and patched.json()["jobs"] == ["j"]
    cleared = await api.patch(f"{URL}/ops", json={"secret": None}, headers=admin)
    assert cleared.json()["secret"] is None

    listed = await api.get(URL, headers=admin)
    assert [n["identifier"] for n in listed.json()["items"]] == ["ops"]
    deliveries = await api.get(f"{URL}/ops/deliveries", headers=admin)
    assert deliveries.status_code == 200 and deliveries.json()["items"] == []
    assert (await api.delete(f"{URL}/ops", headers=admin)).status_code == 204
    assert (await api.get(f"{URL}/ops", headers=admin)).status_code == 404
    assert (await api.delete(f"{URL}/ops", headers=admin)).status_code == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"events": ["run.failed"], "url": "ftp://x.test/"}, "http"),
        ({"events": ["run.exploded"], "url": "https://x.test/"}, "events.0"),
        ({"events": [], "url": "https://x.test/"}, "events"),
        ({"events": ["run.failed"]}, "exactly one of url and email"),
        (
            {"events": ["run.failed"], "url": "https://x.test/", "email": "a@b.test"},
            "exactly one",
        ),
        ({"events": ["run.failed"], "url": "https://x.test/", "format": "xml"}, "format"),
        ({"events": ["run.failed"], "url": "https://x.test/", "jobs": ["no spaces"]}, "jobs"),
        ({"events": ["run.failed"], "url": "https://x.test/", "secret": "whsec_!!"}, "base64"),
        ({"events": ["run.failed"], "url": "http://[::1"}, "url"),
        ({"events": ["run.failed"], "email": "a@b.test"}, "SMTP"),
        ({"events": ["run.failed"], "url": "https://x.test/", "secret": "***"}, "***"),
    ],
)
async def test_notification_bad_input_is_refused_with_a_reason(
    api: RecordingClient, admin: dict[str, str], body: dict[str, Any], says: str
) -> None:
    answer = await api.post(URL, json={"identifier": "n", **body}, headers=admin)
    assert answer.status_code in (400, 422), answer.text
    assert says in answer.text


async def test_notifications_are_for_operators_only(
    api: RecordingClient, admin: dict[str, str], make_user: MakeUser
) -> None:
    body = {"identifier": "n", "events": ["run.failed"], "url": "https://x.test/"}
    assert (await api.post(URL, json=body, headers=admin)).status_code == 201
    viewer = auth(await make_user("viewer", ["viewer"]))
    assert (await api.get(URL, headers=viewer)).status_code == 403
    assert (await api.get(f"{URL}/n/deliveries", headers=viewer)).status_code == 403
    assert (await api.post(URL, json=body, headers=viewer)).status_code == 403
    stranger = auth(await make_user("stranger", []))
    assert (await api.get(URL, headers=stranger)).status_code == 404  # a project unseen
    operator = auth(await make_user("operator", ["operator"]))
    assert (await api.get(f"{URL}/n", headers=operator)).status_code == 200
    assert (await api.get(f"{API}/projects/nope/notifications", headers=admin)).status_code == 404


# The relay and the sender, against a real receiver.


async def test_events_arrive_signed_retried_with_a_stable_id_and_in_order(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    with Receiver(statuses=[500, 500]) as receiver:
        body = {
            "identifier": "all",
            "events": ["run.started", "run.succeeded", "run.failed", "run.fixed"],
            "url": receiver.url,
            "secret": SECRET,
        }
        assert (await api.post(URL, json=body, headers=admin)).status_code == 201
        relay, sender = parts(services)
        try:
            first = await new_run(services)
            await move(services, first, RunStatus.RUNNING, RunStatus.FAILED)
            second = await new_run(services)
            await move(services, second, RunStatus.RUNNING, RunStatus.SUCCEEDED)
            third = await new_run(services)
            await move(services, third, RunStatus.RUNNING, RunStatus.SUCCEEDED)
            await drain(relay, sender)
        finally:
            await sender.close()
        got = receiver.accepted()
        events = [(r.json()["type"], r.json()["data"]["identifier"]) for r in got]
        assert events == [
            ("run.started", first),
            ("run.failed", first),
            ("run.started", second),
            ("run.succeeded", second),
            ("run.fixed", second),  # after a failure; none for the third (after a success)
            ("run.started", third),
            ("run.succeeded", third),
        ]
        # The first event was refused twice, then accepted with the same webhook-id.
        attempts = [r for r in receiver.all() if r.json()["data"]["identifier"] == first]
        assert [r.status for r in attempts[:3]] == [500, 500, 200]
        assert len({r.headers["webhook-id"] for r in attempts[:3]}) == 1
        verifier = Webhook(SECRET)
        for request in got:
            verified = verifier.verify(request.body, request.headers)  # raises if not valid
            assert verified["type"] == request.json()["type"]
        assert got[1].json()["data"]["status"] == "failed"
        assert set(got[1].json()) == {"type", "timestamp", "data"}

        shown = (await api.get(f"{URL}/all/deliveries", headers=admin)).json()["items"]
        assert len(shown) == 7 and {d["status"] for d in shown} == {"delivered"}
        oldest = shown[-1]
        assert oldest["attempts"] == 3 and oldest["last_status_code"] == 200
        assert oldest["message"] == attempts[0].headers["webhook-id"]


async def test_filters_slack_format_and_no_signature_without_a_secret(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    with Receiver() as receiver:
        slack = {
            "identifier": "slack",
            "events": ["run.failed"],
            "jobs": ["k"],
            "url": receiver.url + "/slack",
            "format": "slack",
        }
        assert (await api.post(URL, json=slack, headers=admin)).status_code == 201
        relay, sender = parts(services)
        try:
            ignored = await new_run(services, "j")  # another job: not sent
            await move(services, ignored, RunStatus.RUNNING, RunStatus.FAILED)
            wanted = await new_run(services, "k")
            await move(services, wanted, RunStatus.RUNNING, RunStatus.ABORTED)
            await drain(relay, sender)
        finally:
            await sender.close()
        got = receiver.accepted()
        assert len(got) == 1
        text = got[0].json()["text"]
        assert text.startswith("Failed (aborted)") and wanted in text and "p/k" in text
        assert "webhook-signature" not in got[0].headers
        assert got[0].headers["webhook-id"].startswith("msg_")


async def test_delivery_is_retried_for_its_time_then_given_up(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    with Receiver(statuses=[503] * 1000) as receiver:
        body = {"identifier": "down", "events": ["run.failed"], "url": receiver.url}
        assert (await api.post(URL, json=body, headers=admin)).status_code == 201
        relay, sender = parts(services, retry_for=1.5)
        try:
            run = await new_run(services)
            await move(services, run, RunStatus.RUNNING, RunStatus.EXCEPTION)
            await drain(relay, sender, rounds=500)
        finally:
            await sender.close()
        shown = (await api.get(f"{URL}/down/deliveries", headers=admin)).json()["items"]
        assert [d["status"] for d in shown] == ["failed"]
        assert shown[0]["attempts"] >= 2 and shown[0]["last_status_code"] == 503
        assert "HTTP 503" in shown[0]["last_error"]
        assert len(receiver.all()) == shown[0]["attempts"]


async def test_private_addresses_are_refused_when_forbidden(
    api: RecordingClient, admin: dict[str, str], services: Services
) -> None:
    with Receiver() as receiver:
        body = {"identifier": "local", "events": ["run.failed"], "url": receiver.url}
        assert (await api.post(URL, json=body, headers=admin)).status_code == 201
        relay, sender = parts(services, allow_private=False)
        try:
            run = await new_run(services)
            await move(services, run, RunStatus.RUNNING, RunStatus.FAILED)
            while await relay.tick():
                pass
            assert await sender.tick() == 1
        finally:
            await sender.close()
        assert receiver.all() == []
        shown = (await api.get(f"{URL}/local/deliveries", headers=admin)).json()["items"]
        assert "private address" in shown[0]["last_error"]
        assert shown[0]["status"] == "pending" and shown[0]["attempts"] == 1


async def test_relay_does_not_pass_a_missing_identifier_until_its_wait_is_over(
    services: Services,
) -> None:
    relay = NotificationRelay(services.db, services.clock, services.events)
    now = services.clock.now()
    position, seen, gap = relay._advance(10, {12, 13}, None)
    assert (position, seen) == (10, {12, 13}) and gap is not None
    position, seen, gap = relay._advance(10, {11, 12, 13}, gap)
    assert (position, seen, gap) == (13, set(), None)
    old = now - timedelta(seconds=120)
    position, seen, gap = relay._advance(10, {12, 13, 15}, old)
    assert (position, seen) == (13, {15})  # 11 never came: given up, then waiting for 14
    assert json.dumps(sorted(seen)) == "[15]"


async def test_an_identifier_committed_after_a_later_one_is_still_relayed(
    api: RecordingClient, admin: dict[str, str], services: Services, engine_name: str
) -> None:
    if engine_name != "postgresql":
        pytest.skip("SQLite has one writer: identifiers commit in order")
    with Receiver() as receiver:
        body = {"identifier": "gap", "events": ["run.failed"], "url": receiver.url}
        assert (await api.post(URL, json=body, headers=admin)).status_code == 201
        relay, sender = parts(services)
        try:
            slow, fast = await new_run(services), await new_run(services)
            await move(services, slow, RunStatus.RUNNING)
            await move(services, fast, RunStatus.RUNNING)
            while await relay.tick():
                pass
            async with services.db.transaction() as held:  # takes its identifier first...
                now = services.clock.now()
                ended = {"completion_date": now, "update_date": now}
                assert await run_storage.set_run_status(held, slow, RunStatus.FAILED, ended)
                await move(services, fast, RunStatus.FAILED)  # ...commits after this one
                assert await relay.tick() == 1  # the later one, relayed
            await drain(relay, sender)
        finally:
            await sender.close()
        got = sorted(r.json()["data"]["identifier"] for r in receiver.accepted())
        assert got == sorted([slow, fast])
