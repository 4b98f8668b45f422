"""Access for many teams (CONTRACT section 9), in process on both engines: project members, the
404 rule, the filtered project list, token scopes and projects, apply checked per project, and
the website's project pages for members and others. The role matrix is test_authorization.py."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestra.server import build_app
from orchestra.services.container import Services
from orchestra.services.users import AUTH_CACHE_SECONDS
from orchestra.storage import records
from orchestra.storage.schema import user as user_table
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

SESSION_COOKIE = "orchestra_session"
JOB = {"identifier": "j", "steps": [{"name": "s", "command": ["true"]}]}


@pytest.fixture
async def site(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The API and the website as `orchestra server` builds them, in process."""
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def projects(services: Services, *identifiers: str) -> None:
    for identifier in identifiers:
        await services.projects.create_project({"identifier": identifier})


async def member(
    api: RecordingClient, admin: str, project: str, role: str, **who: str
) -> httpx.Response:
    body = {**who, "role": role}
    return await api.post(f"/api/v1/projects/{project}/members", json=body, headers=auth(admin))


async def listed(api: RecordingClient, secret: str, limit: int = 2) -> list[str]:
    """Every project GET /projects lists, page by page."""
    names: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/v1/projects", params=params, headers=auth(secret))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        names += [p["identifier"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return names
    raise AssertionError("the pages never ended")


async def test_a_project_the_caller_may_not_see_answers_exactly_as_an_unknown_one(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    await projects(services, "p")
    admin = await make_user("admin", ["administrator"])
    outsider = await make_user("outsider")
    reader = await make_user("reader")
    assert (await member(api, admin, "p", "viewer", user="reader")).status_code == 201
    hidden = await api.get("/api/v1/projects/p/jobs", headers=auth(outsider))
    unknown = await api.get("/api/v1/projects/nope/jobs", headers=auth(admin))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == {"detail": "no project 'p'"}
    assert unknown.json() == {"detail": "no project 'nope'"}
    for method, path in [("PATCH", "/api/v1/projects/p"), ("GET", "/api/v1/projects/p/runs")]:
        response = await api.request(method, path, json={}, headers=auth(outsider))
        assert response.json() == {"detail": "no project 'p'"}, (method, path)
    # A member reads it, and is refused (403, not 404) what its role does not allow.
    assert (await api.get("/api/v1/projects/p", headers=auth(reader))).status_code == 200
    patched = await api.patch("/api/v1/projects/p", json={}, headers=auth(reader))
    assert patched.status_code == 403
    assert (await api.get("/api/v1/projects/p")).status_code == 401


async def test_the_project_list_holds_only_readable_projects_page_by_page(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    await projects(services, *[f"p{n}" for n in range(7)])
    admin = await make_user("admin", ["administrator"])
    viewer = await make_user("viewer", ["viewer"])
    nobody = await make_user("nobody")
    worker = await make_user("agent", ["worker"])
    alice = await make_user("alice")
    await services.users.update_user("alice", {"groups": ["team"]})
    assert (await member(api, admin, "p1", "viewer", user="alice")).status_code == 201
    assert (await member(api, admin, "p4", "operator", user="alice")).status_code == 201
    assert (await member(api, admin, "p6", "viewer", group="team")).status_code == 201
    assert (await member(api, admin, "p5", "viewer", group="other team")).status_code == 201
    assert await listed(api, alice) == ["p1", "p4", "p6"]
    assert await listed(api, alice, limit=1) == ["p1", "p4", "p6"]
    assert await listed(api, viewer, limit=3) == [f"p{n}" for n in range(7)]
    assert await listed(api, nobody) == []
    assert await listed(api, worker) == []  # runs, not projects
    _token, limited = await services.users.create_token("admin", "q", None, projects=["p2", "p5"])
    assert await listed(api, limited, limit=1) == ["p2", "p5"]
    _token, both = await services.users.create_token("alice", "q", None, projects=["p4", "p6"])
    assert await listed(api, both) == ["p4", "p6"]


async def test_members_are_added_changed_listed_and_removed(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    await projects(services, "p")
    admin = await make_user("admin", ["administrator"])
    operator = await make_user("operator", ["operator"])
    bob = await make_user("bob")
    created = await member(api, admin, "p", "viewer", user="bob")
    assert created.status_code == 201
    assert set(created.json()) == {"user", "role", "creation_date", "update_date"}
    assert (await api.get("/api/v1/projects/p/jobs", headers=auth(bob))).status_code == 200
    # Changing the role takes effect at once (the cached authentication is dropped).
    trigger = await api.post("/api/v1/projects/p/jobs", json=JOB, headers=auth(bob))
    assert trigger.status_code == 403
    changed = await member(api, admin, "p", "operator", user="bob")
    assert changed.status_code == 200 and changed.json()["role"] == "operator"
    assert (
        await api.post("/api/v1/projects/p/jobs", json=JOB, headers=auth(bob))
    ).status_code == 201
    group = await member(api, admin, "p", "viewer", group="/ops/é team")
    assert group.status_code == 201 and "user" not in group.json()
    page = await api.get("/api/v1/projects/p/members", params={"limit": 1}, headers=auth(bob))
    assert page.status_code == 200
    assert page.json()["items"] == [{**group.json()}] and page.json()["next_cursor"]
    second = await api.get(
        "/api/v1/projects/p/members",
        params={"limit": 1, "cursor": page.json()["next_cursor"]},
        headers=auth(bob),
    )
    assert [m.get("user") for m in second.json()["items"]] == ["bob"]
    # Only administrators change members; operators of the project or globally may not.
    assert (await member(api, operator, "p", "operator", user="operator")).status_code == 403
    assert (await member(api, bob, "p", "operator", group="x")).status_code == 403
    removed = await api.delete(
        "/api/v1/projects/p/members/group:%2Fops%2F%C3%A9%20team", headers=auth(admin)
    )
    assert removed.status_code == 204
    again = await api.delete("/api/v1/projects/p/members/group:/ops/é team", headers=auth(admin))
    assert again.status_code == 404 and "no member" in again.json()["detail"]
    assert (
        await api.delete("/api/v1/projects/p/members/bob", headers=auth(admin))
    ).status_code == 204
    hidden = await api.get("/api/v1/projects/p/jobs", headers=auth(bob))
    assert hidden.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"user": "ghost", "role": "viewer"}, "no user 'ghost'"),
        ({"user": "bob", "role": "administrator"}, "unknown member role"),
        ({"user": "bob", "group": "g", "role": "viewer"}, "either"),
        ({"role": "viewer"}, "either"),
        ({"group": "", "role": "viewer"}, "printable"),
        ({"group": "bad\nname", "role": "viewer"}, "printable"),
        ({"group": "g" * 201, "role": "viewer"}, "printable"),
        ({"user": "bob"}, "role"),
    ],
)
async def test_bad_members_are_refused_with_a_clear_message(
    services: Services,
    api: RecordingClient,
    make_user: MakeUser,
    body: dict[str, Any],
    message: str,
) -> None:
    await projects(services, "p")
    admin = await make_user("admin", ["administrator"])
    await services.users.create_user("bob")
    response = await api.post("/api/v1/projects/p/members", json=body, headers=auth(admin))
    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])
    unknown = await member(api, admin, "nope", "viewer", user="bob")
    assert unknown.status_code == 404


async def test_groups_give_their_members_rights_and_deleting_a_user_ends_theirs(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    await projects(services, "p")
    await services.projects.create_job("p", JOB)
    admin = await make_user("admin", ["administrator"])
    carol = await make_user("carol")
    assert (await member(api, admin, "p", "operator", group="builders")).status_code == 201
    trigger = "/api/v1/projects/p/jobs/j/trigger"
    assert (await api.post(trigger, json={}, headers=auth(carol))).status_code == 404
    bad = await api.patch("/api/v1/users/carol", json={"groups": ["a\x00b"]}, headers=auth(admin))
    assert bad.status_code == 422
    patched = await api.patch(
        "/api/v1/users/carol", json={"groups": ["builders", "builders"]}, headers=auth(admin)
    )
    assert patched.status_code == 200 and patched.json()["groups"] == ["builders"]
    assert (await api.post(trigger, json={}, headers=auth(carol))).status_code == 201
    # A user's own membership and a group's: the higher role wins.
    assert (await member(api, admin, "p", "viewer", user="carol")).status_code == 201
    assert (await api.post(trigger, json={}, headers=auth(carol))).status_code == 201
    assert (await api.delete("/api/v1/users/carol", headers=auth(admin))).status_code == 204
    listing = await api.get("/api/v1/projects/p/members", headers=auth(admin))
    assert [m.get("user") for m in listing.json()["items"]] == [None]  # the group stays
    await services.users.create_user("carol")  # a new carol inherits nothing
    _token, again = await services.users.create_token("carol", None, None)
    assert (await api.get("/api/v1/projects/p", headers=auth(again))).status_code == 404


async def test_a_token_never_exceeds_its_user_even_with_the_admin_scope(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    await make_user("root", ["administrator"])
    _token, scoped = await services.users.create_token("root", None, None, scopes=["admin"])
    assert (await api.get("/api/v1/users", headers=auth(scoped))).status_code == 200
    # The role goes through another process (no cache of this one is told): the token loses
    # it within the cache time.
    async with services.db.transaction() as conn:
        await records.update(conn, user_table, {"identifier": "root"}, {"roles": []})
    deadline = time.monotonic() + AUTH_CACHE_SECONDS + 5
    while (await api.get("/api/v1/users", headers=auth(scoped))).status_code != 403:
        assert time.monotonic() < deadline, "the token kept a role its user lost"
        await asyncio.sleep(0.05)
    assert (await api.get("/api/v1/me", headers=auth(scoped))).status_code == 200


@pytest.mark.parametrize("scopes", [["read"], ["trigger"], ["write"], ["read", "write"]])
async def test_scoped_tokens_may_not_create_or_revoke_tokens(
    services: Services, api: RecordingClient, make_user: MakeUser, scopes: list[str]
) -> None:
    await make_user("root", ["administrator"])
    _token, scoped = await services.users.create_token("root", None, None, scopes=scopes)
    other, _ = await services.users.create_token("root", None, None)
    created = await api.post("/api/v1/me/tokens", json={}, headers=auth(scoped))
    assert created.status_code == 403
    assert (
        await api.post("/api/v1/users/root/tokens", json={}, headers=auth(scoped))
    ).status_code == 403
    revoked = await api.delete(f"/api/v1/me/tokens/{other.identifier}", headers=auth(scoped))
    assert revoked.status_code == 403
    assert (await api.get("/api/v1/me/tokens", headers=auth(scoped))).status_code == 200
    _token, admin = await services.users.create_token("root", None, None, scopes=["admin"])
    made = await api.post("/api/v1/me/tokens", json={"scopes": scopes}, headers=auth(admin))
    assert made.status_code == 201 and made.json()["scopes"] == scopes
    assert made.json()["projects"] is None


async def test_a_project_limited_token_makes_only_tokens_limited_to_some_of_its_projects(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    await projects(services, "p", "q", "r")
    await make_user("root", ["administrator"])
    _token, limited = await services.users.create_token(
        "root", None, None, scopes=["admin"], projects=["p", "q"]
    )
    headers = auth(limited)
    for body in ({}, {"projects": ["p", "r"]}, {"projects": ["r"]}):
        refused = await api.post("/api/v1/me/tokens", json=body, headers=headers)
        assert refused.status_code == 422, (body, refused.text)
    made = await api.post("/api/v1/me/tokens", json={"projects": ["q"]}, headers=headers)
    assert made.status_code == 201 and made.json()["projects"] == ["q"]
    assert made.json()["scopes"] is None
    narrower = made.json()["secret"]
    assert (await api.get("/api/v1/projects/q", headers=auth(narrower))).status_code == 200
    assert (await api.get("/api/v1/projects/p", headers=auth(narrower))).status_code == 404
    # Every global route is closed to it, its own profile aside.
    for path in ("/api/v1/workers", "/api/v1/users", "/api/v1/audit", "/metrics"):
        assert (await api.get(path, headers=headers)).status_code == 403, path
    assert (
        await api.post("/api/v1/projects", json={"identifier": "s"}, headers=headers)
    ).status_code == 403
    assert (await api.get("/api/v1/me", headers=headers)).status_code == 200
    shown = await api.get("/api/v1/me/tokens", headers=headers)
    limits = {t["identifier"]: (t["scopes"], t["projects"]) for t in shown.json()["items"]}
    assert limits[made.json()["identifier"]] == (None, ["q"])
    assert ((["admin"], ["p", "q"])) in limits.values()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scopes": []}, "non-empty"),
        ({"scopes": ["read", "read"]}, "repeat"),
        ({"scopes": ["root"]}, "unknown scope"),
        ({"projects": []}, "non-empty"),
        ({"projects": ["nope"]}, "no project 'nope'"),
        ({"projects": ["hidden"]}, "no project 'hidden'"),  # as an unknown one
    ],
)
async def test_bad_token_scopes_and_projects_are_refused(
    services: Services, api: RecordingClient, make_user: MakeUser, body: Any, message: str
) -> None:
    await projects(services, "hidden")
    secret = await make_user("someone")
    response = await api.post("/api/v1/me/tokens", json=body, headers=auth(secret))
    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])


async def test_apply_needs_project_write_in_every_project_of_the_document(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    await projects(services, "p", "q")
    admin = await make_user("admin", ["administrator"])
    dave = await make_user("dave")
    assert (await member(api, admin, "p", "operator", user="dave")).status_code == 201
    assert (await member(api, admin, "q", "viewer", user="dave")).status_code == 201
    mine = {"projects": [{"identifier": "p", "display_name": "Mine", "jobs": [JOB]}]}
    applied = await api.post("/api/v1/apply", json=mine, headers=auth(dave))
    assert applied.status_code == 200, applied.text
    for other in ("q", "new-project"):
        document = {"projects": [mine["projects"][0], {"identifier": other, "display_name": "X"}]}
        refused = await api.post("/api/v1/apply", json=document, headers=auth(dave))
        assert refused.status_code == 403 and repr(other) in refused.json()["detail"]
    assert (await services.projects.get_project("q")).display_name == "q"
    names = [p.identifier for p in (await services.projects.list_projects(None, 50))[0]]
    assert "new-project" not in names
    _token, read_only = await services.users.create_token("admin", None, None, scopes=["read"])
    assert (await api.post("/api/v1/apply", json=mine, headers=auth(read_only))).status_code == 403


async def test_the_website_shows_members_their_projects_and_hides_the_others(
    services: Services, site: httpx.AsyncClient, make_user: MakeUser
) -> None:
    await projects(services, "mine", "theirs")
    await services.projects.create_job("mine", JOB)
    await services.projects.create_job("theirs", JOB)
    await services.runs.trigger("mine", "j", {}, {"type": "test"})
    await services.runs.trigger("theirs", "j", {}, {"type": "test"})
    admin = await make_user("admin", ["administrator"])
    erin = await make_user("erin")
    await services.members.put_member("mine", "user", "erin", "viewer")
    site.cookies.set(SESSION_COOKIE, erin)
    listing = await site.get("/projects")
    assert listing.status_code == 200
    assert 'href="/projects/mine"' in listing.text and "/projects/theirs" not in listing.text
    home = await site.get("/")
    assert "/projects/mine/runs/" in home.text and "/projects/theirs" not in home.text
    page = await site.get("/projects/mine")
    assert page.status_code == 200 and "Members" in page.text
    assert 'action="/projects/mine/members"' not in page.text  # no form for a viewer
    assert 'action="/projects/mine/state"' not in page.text
    hidden = await site.get("/projects/theirs")
    unknown = await site.get("/projects/nope")
    assert hidden.status_code == unknown.status_code == 404
    assert "no project" in hidden.text and "/projects/theirs/jobs" not in hidden.text
    assert (await site.get("/projects/theirs/runs")).status_code == 404
    # An administrator adds a member through the project page's form.
    site.cookies.set(SESSION_COOKIE, admin)
    page = await site.get("/projects/theirs")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None and 'action="/projects/theirs/members"' in page.text
    form = {"csrf_token": token.group(1), "kind": "user", "name": "erin", "role": "operator"}
    added = await site.post("/projects/theirs/members", data=form)
    assert added.status_code == 303
    site.cookies.set(SESSION_COOKIE, erin)
    page = await site.get("/projects/theirs")
    assert page.status_code == 200 and 'action="/projects/theirs/state"' in page.text
