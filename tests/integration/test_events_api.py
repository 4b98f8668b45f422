"""GET /api/v1/events refuses what it cannot serve with a clear 4xx, before any stream: no
credentials, a token in the URL only, bad cursors, a project the caller may not see."""

from __future__ import annotations

from tests.helpers import RecordingClient
from tests.support.processes import API

EVENTS = API + "/events"


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_bad_requests_get_a_4xx_with_a_message(api: RecordingClient, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin", ["administrator"])
    member = await make_user("member")
    await api.put(f"{API}/projects/p", json={}, headers=auth(admin))
    await api.put(f"{API}/projects/q", json={}, headers=auth(admin))
    await api.post(
        f"{API}/projects/p/members", json={"user": "member", "role": "viewer"}, headers=auth(admin)
    )
    assert (await api.get(EVENTS)).status_code == 401
    # A token is never taken from the URL.
    assert (await api.get(EVENTS, params={"token": admin})).status_code == 401
    for params in ({"after": "-1"}, {"after": "soon"}, {"after": str(2**63)}):
        answer = await api.get(EVENTS, params=params, headers=auth(admin))
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["detail"] or answer.json().get("message")
    answer = await api.get(EVENTS, headers={**auth(admin), "Last-Event-ID": "-5"})
    assert answer.status_code == 422 and "Last-Event-ID" in answer.text
    answer = await api.get(EVENTS, params={"project": "../x"}, headers=auth(admin))
    assert answer.status_code in (400, 422) and "project" in answer.text
    # A project the member may not see is answered as an unknown one.
    answer = await api.get(EVENTS, params={"project": "q"}, headers=auth(member))
    assert answer.status_code == 404 and "no project" in answer.text
