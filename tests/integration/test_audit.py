"""The audit log (orchestra.services.audit, orchestra.web.audit) through the API: what a change
records, what is not recorded, who may read it, paging and filters."""

from __future__ import annotations

import base64
import json

import pytest

from orchestra.services.container import Services
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

JOB = {"steps": [{"name": "s", "command": ["true"]}]}


async def events(api: RecordingClient, token: str, **params: str) -> list[dict[str, object]]:
    response = await api.get("/api/v1/audit", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_a_change_is_recorded_with_who_what_and_where(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    assert (await api.put("/api/v1/projects/p", json={}, headers=auth(admin))).status_code == 201
    put = await api.put("/api/v1/projects/p/jobs/build", json=JOB, headers=auth(admin))
    assert put.status_code == 201
    recorded = await events(api, admin)
    assert [(e["method"], e["route"], e["path"], e["status"]) for e in recorded] == [
        ("PUT", "/api/v1/projects/{project}/jobs/{job}", "/api/v1/projects/p/jobs/build", 201),
        ("PUT", "/api/v1/projects/{project}", "/api/v1/projects/p", 201),
    ]
    assert {e["actor"] for e in recorded} == {"admin"}
    assert all(e["address"] and e["date"] for e in recorded)


async def test_reads_refusals_failures_triggers_and_logins_are_not_recorded(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    admin = await make_user("admin", ["administrator"])
    viewer = await make_user("viewer", ["viewer"])
    await services.users.create_user("carol", password="carol's password 1")
    await api.put("/api/v1/projects/p", json={}, headers=auth(admin))
    await api.put("/api/v1/projects/p/jobs/build", json=JOB, headers=auth(admin))
    before = await events(api, admin)

    await api.get("/api/v1/projects/p", headers=auth(admin))  # a read
    await api.put("/api/v1/projects/p/jobs/x", json=JOB, headers=auth(viewer))  # refused: 403
    await api.put("/api/v1/projects/p/jobs/x", json={"steps": []}, headers=auth(admin))  # 4xx
    await api.delete("/api/v1/projects/nope", headers=auth(admin))  # 404
    trigger = await api.post("/api/v1/projects/p/jobs/build/trigger", headers=auth(admin))
    assert trigger.status_code == 201  # the run holds who triggered it
    login = await api.post(
        "/api/v1/me/login", json={"user": "carol", "password": "carol's password 1"}
    )
    assert login.status_code == 200

    assert await events(api, admin) == before


async def test_no_secret_reaches_the_audit_log(
    api: RecordingClient, make_user: MakeUser, services: Services
) -> None:
    admin = await make_user("admin", ["administrator"])
    password = "a new user's password 1"
    created = await api.post(
        "/api/v1/users",
        json={"identifier": "dave", "roles": ["viewer"], "password": password},
        headers=auth(admin),
    )
    assert created.status_code == 201, created.text
    token = await api.post(
        "/api/v1/users/dave/tokens", json={"description": "ci"}, headers=auth(admin)
    )
    assert token.status_code == 201, token.text
    secret = token.json()["secret"]
    recorded = await events(api, admin)
    assert [e["route"] for e in recorded] == [
        "/api/v1/users/{user}/tokens",
        "/api/v1/users",
    ]
    assert password not in str(recorded) and secret not in str(recorded)


@pytest.mark.parametrize(("roles", "status"), [(["viewer"], 403), (["operator"], 403)])
async def test_only_auditors_and_administrators_read_the_audit_log(
    api: RecordingClient, make_user: MakeUser, roles: list[str], status: int
) -> None:
    assert (await api.get("/api/v1/audit")).status_code == 401
    other = await make_user("someone", roles)
    assert (await api.get("/api/v1/audit", headers=auth(other))).status_code == status
    auditor = await make_user("auditor", ["auditor"])
    assert (await api.get("/api/v1/audit", headers=auth(auditor))).status_code == 200


async def test_audit_log_pages_newest_first_and_filters_by_actor(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    operator = await make_user("olga", ["operator"])
    await api.put("/api/v1/projects/p", json={}, headers=auth(admin))
    for n in range(5):
        who = admin if n % 2 else operator
        response = await api.put(f"/api/v1/projects/p/jobs/j{n}", json=JOB, headers=auth(who))
        assert response.status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await api.get("/api/v1/audit", params=params, headers=auth(admin))
        body = page.json()
        seen += [e["path"].rsplit("/", 1)[-1] for e in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ["j4", "j3", "j2", "j1", "j0", "p"]
    olga = await events(api, admin, actor="olga")
    assert [e["path"].rsplit("/", 1)[-1] for e in olga] == ["j4", "j2", "j0"]
    bad = await api.get("/api/v1/audit", params={"actor": "no such/user"}, headers=auth(admin))
    assert bad.status_code in (400, 422) and bad.json()["detail"]
    bad_cursor = await api.get("/api/v1/audit", params={"cursor": "x"}, headers=auth(admin))
    assert bad_cursor.status_code in (400, 422) and bad_cursor.json()["detail"]


async def test_a_cursor_beyond_any_row_is_refused_not_a_server_error(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    for value in (10**30, 2**63, 2**62, 2**31):
        cursor = base64.urlsafe_b64encode(json.dumps([value]).encode()).decode().rstrip("=")
        response = await api.get("/api/v1/audit", params={"cursor": cursor}, headers=auth(admin))
        # Beyond 64 bits: not a cursor. Within them, beyond the column: refused or empty.
        assert response.status_code in ((422,) if value >= 2**63 else (200, 422)), response.text
        assert response.status_code == 200 or response.json()["detail"]
