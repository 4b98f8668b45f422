"""Issue 20's hardening of the website and accounts, in process on both engines: the login
form's CSRF token signed with the instance's key, common passwords refused, a password change or
reset ending the user's other sessions (and their tokens when asked), wrong old passwords
throttled like logins, and followed logs ending once their reader may no longer read them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from orchestra.server import build_app
from orchestra.services.container import Services
from orchestra.services.throttle import LoginThrottle
from orchestra.web import follow
from orchestra.web.site.security import LOGIN_CSRF_COOKIE
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth

PASSWORD = "first password 1"
NEW_PASSWORD = "second password 2"
SESSION_COOKIE = "orchestra_session"
FOLLOW_DEADLINE = 10.0


@pytest.fixture
async def site(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The API and the website as `orchestra server` builds them, in process, keeping cookies
    like a browser."""
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def form_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


async def site_login(site: httpx.AsyncClient, user: str, password: str) -> str:
    """Log in through the website's form; the session cookie's value."""
    page = await site.get("/login")
    response = await site.post(
        "/login", data={"user": user, "password": password, "csrf_token": form_token(page)}
    )
    assert response.status_code == 303, response.text
    session = site.cookies.get(SESSION_COOKIE)
    assert session
    return session


async def api_login(api: RecordingClient, user: str, password: str) -> str:
    response = await api.post("/api/v1/me/login", json={"user": user, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def status(api: RecordingClient, secret: str) -> int:
    return (await api.get("/api/v1/me", headers=auth(secret))).status_code


# 1. The login form's CSRF token.


async def test_login_form_csrf_cannot_be_chosen_by_whoever_sets_the_cookie(
    services: Services, site: httpx.AsyncClient
) -> None:
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    page = await site.get("/login")
    nonce = site.cookies.get(LOGIN_CSRF_COOKIE)
    assert nonce and form_token(page) != nonce  # the form's value is not the cookie's
    # A cookie planted by someone else (another subdomain, a man in the middle of plain HTTP),
    # with the same value in the form: the old double submit let it through.
    site.cookies.set(LOGIN_CSRF_COOKIE, "x" * 43)
    planted = await site.post(
        "/login", data={"user": "alice", "password": PASSWORD, "csrf_token": "x" * 43}
    )
    assert planted.status_code == 403, planted.status_code
    assert site.cookies.get(SESSION_COOKIE) is None
    site.cookies.clear()
    session = await site_login(site, "alice", PASSWORD)
    # A session's forms carry an HMAC under the instance's key: the old unkeyed one of the
    # session's secret is refused.
    unkeyed = hmac.new(session.encode(), b"orchestra-csrf", hashlib.sha256).hexdigest()
    refused = await site.post("/logout", data={"csrf_token": unkeyed})
    assert refused.status_code == 403
    profile = await site.get("/profile")
    assert profile.status_code == 200
    assert form_token(profile) != unkeyed
    done = await site.post("/logout", data={"csrf_token": form_token(profile)})
    assert done.status_code == 303
    assert await services.users.authenticate(session) is None


async def test_a_session_form_token_is_bound_to_its_session(
    services: Services, site: httpx.AsyncClient
) -> None:
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    first = await site_login(site, "alice", PASSWORD)
    first_token = form_token(await site.get("/profile"))
    site.cookies.clear()
    second = await site_login(site, "alice", PASSWORD)
    assert second != first
    refused = await site.post("/logout", data={"csrf_token": first_token})
    assert refused.status_code == 403
    assert await services.users.authenticate(second) is not None


# 5. Common and guessable passwords.


@pytest.mark.parametrize(
    "weak", ["password", "12345678", "qwertyuiop", "iloveyou123", "P@ssw0rd2024", "alice1234"]
)
async def test_common_and_guessable_passwords_are_refused_with_a_clear_422(
    services: Services, api: RecordingClient, make_user: MakeUser, weak: str
) -> None:
    admin = await make_user("admin", ["administrator"])
    created = await api.post(
        "/api/v1/users", json={"identifier": "alice", "password": weak}, headers=auth(admin)
    )
    assert created.status_code == 422, created.text
    assert "password is too easy to guess" in created.json()["detail"]
    await services.users.create_user("alice", password=PASSWORD)
    reset = await api.patch("/api/v1/users/alice", json={"password": weak}, headers=auth(admin))
    assert reset.status_code == 422
    assert "too easy to guess" in reset.json()["detail"]
    session = await api_login(api, "alice", PASSWORD)
    changed = await api.post(
        "/api/v1/me/password",
        json={"old_password": PASSWORD, "new_password": weak},
        headers=auth(session),
    )
    assert changed.status_code == 422
    assert "too easy to guess" in changed.json()["detail"]
    await api_login(api, "alice", PASSWORD)  # unchanged


# 6. A password change or reset ends the other sessions, and the tokens when asked.


async def test_password_change_ends_other_sessions_and_on_request_the_api_tokens(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    current, other = (
        await api_login(api, "alice", PASSWORD),
        await api_login(api, "alice", PASSWORD),
    )
    _token, api_token = await services.users.create_token("alice", "ci", None)
    await services.users.create_user("bob", roles=["viewer"], password=PASSWORD)
    bobs = await api_login(api, "bob", PASSWORD)
    changed = await api.post(
        "/api/v1/me/password",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=auth(current),
    )
    assert changed.status_code == 204, changed.text
    assert [await status(api, s) for s in (current, other, api_token, bobs)] == [200, 401, 200, 200]
    again = await api.post(
        "/api/v1/me/password",
        json={"old_password": NEW_PASSWORD, "new_password": PASSWORD, "revoke_tokens": True},
        headers=auth(current),
    )
    assert again.status_code == 204, again.text
    assert [await status(api, s) for s in (current, api_token, bobs)] == [200, 401, 200]


async def test_password_reset_by_an_administrator_ends_the_user_s_sessions(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    session = await api_login(api, "alice", PASSWORD)
    _token, api_token = await services.users.create_token("alice", "ci", None)
    renamed = await api.patch(
        "/api/v1/users/alice", json={"display_name": "Alice"}, headers=auth(admin)
    )
    assert renamed.status_code == 200
    assert [await status(api, s) for s in (session, api_token)] == [200, 200]
    reset = await api.patch(
        "/api/v1/users/alice", json={"password": NEW_PASSWORD}, headers=auth(admin)
    )
    assert reset.status_code == 200, reset.text
    assert [await status(api, s) for s in (session, api_token, admin)] == [401, 200, 200]
    session = await api_login(api, "alice", NEW_PASSWORD)
    revoking = await api.patch(
        "/api/v1/users/alice",
        json={"password": PASSWORD, "revoke_tokens": True},
        headers=auth(admin),
    )
    assert revoking.status_code == 200, revoking.text
    assert [await status(api, s) for s in (session, api_token, admin)] == [401, 401, 200]


async def test_website_password_forms_end_sessions_and_revoke_tokens_when_ticked(
    services: Services, site: httpx.AsyncClient, api: RecordingClient
) -> None:
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    other = await api_login(api, "alice", PASSWORD)
    _token, api_token = await services.users.create_token("alice", "ci", None)
    session = await site_login(site, "alice", PASSWORD)
    profile = await site.get("/profile")
    assert 'name="revoke_tokens"' in profile.text
    changed = await site.post(
        "/profile/password",
        data={
            "csrf_token": form_token(profile),
            "old_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "revoke_tokens": "true",
        },
    )
    assert changed.status_code == 303 and "error=" not in changed.headers["location"]
    assert [await status(api, s) for s in (session, other, api_token)] == [200, 401, 401]
    # An administrator's reset on the user page, box unticked: sessions end, tokens stay.
    await services.users.create_user("admin", roles=["administrator"], password=PASSWORD)
    _token, second_token = await services.users.create_token("alice", "ci", None)
    site.cookies.clear()
    await site_login(site, "admin", PASSWORD)
    page = await site.get("/users/alice")
    assert 'name="revoke_tokens"' in page.text
    reset = await site.post(
        "/users/alice",
        data={
            "csrf_token": form_token(page),
            "display_name": "alice",
            "is_enabled": "true",
            "roles": "viewer",
            "password": PASSWORD,
        },
    )
    assert reset.status_code == 303 and "error=" not in reset.headers["location"]
    assert [await status(api, s) for s in (session, second_token)] == [401, 200]


# 7. Wrong old passwords are throttled like logins.


async def test_wrong_old_passwords_are_throttled_like_logins(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    session = await api_login(api, "alice", PASSWORD)
    services.users.throttle = LoginThrottle(
        services.db, services.users.clock, per_user_and_address=3, per_user=100, per_address=100
    )

    async def change(old: str) -> httpx.Response:
        return await api.post(
            "/api/v1/me/password",
            json={"old_password": old, "new_password": NEW_PASSWORD},
            headers=auth(session),
        )

    assert [(await change(f"guess number {n}")).status_code for n in range(3)] == [422] * 3
    refused = await change(PASSWORD)  # even the right one, once limited
    assert refused.status_code == 429
    assert "too many failed logins" in refused.json()["detail"]
    # The same limit holds the login form: the guesses counted against alice.
    login = await api.post("/api/v1/me/login", json={"user": "alice", "password": PASSWORD})
    assert login.status_code == 429


# 8. A followed log ends once its reader may no longer read it.


@pytest.fixture
async def pending_run(services: Services) -> str:
    """A run that stays pending (no worker): its followed log never ends by itself."""
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", {"identifier": "j", "steps": [{"command": ["true"]}]})
    run = await services.runs.trigger("p", "j", {}, {"type": "api", "user": "test"}, None)
    return run.identifier


async def test_followed_log_ends_when_the_token_is_revoked_or_the_user_disabled(
    services: Services,
    api: RecordingClient,
    make_user: MakeUser,
    pending_run: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follow, "RECHECK_SECONDS", 0.2)
    path = f"/api/v1/projects/p/runs/{pending_run}/log?follow=true"
    reader = await make_user("reader", ["viewer"])
    other = await make_user("other", ["viewer"])
    tokens, _ = await services.users.list_tokens("reader", None, 10)
    revoked = asyncio.create_task(api.get(path, headers=auth(reader)))
    disabled = asyncio.create_task(api.get(path, headers=auth(other)))
    stepped = asyncio.create_task(
        api.get(
            f"/api/v1/projects/p/runs/{pending_run}/steps/0/log?follow=true", headers=auth(other)
        )
    )
    await asyncio.sleep(1.0)  # five checks: both still allowed, both still streaming
    assert not revoked.done() and not disabled.done() and not stepped.done()
    await services.users.revoke_token("reader", tokens[0].identifier)
    await services.users.update_user("other", {"is_enabled": False})
    done = await asyncio.wait_for(asyncio.gather(revoked, disabled, stepped), FOLLOW_DEADLINE)
    assert [r.status_code for r in done] == [200, 200, 200]


async def test_website_followed_log_ends_when_the_session_ends(
    services: Services, site: httpx.AsyncClient, pending_run: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "RECHECK_SECONDS", 0.2)
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    session = await site_login(site, "alice", PASSWORD)
    streaming = asyncio.create_task(site.get(f"/projects/p/runs/{pending_run}/log?follow=true"))
    await asyncio.sleep(1.0)
    assert not streaming.done()
    caller = await services.users.authenticate(session)
    assert caller is not None and caller.token is not None
    await services.users.revoke_token("alice", caller.token)
    response = await asyncio.wait_for(streaming, FOLLOW_DEADLINE)
    assert response.status_code == 200


# 4. The API's docs page: installed files only, under a Content-Security-Policy.


async def test_docs_page_loads_only_local_files_under_a_strict_policy(
    api: RecordingClient,
) -> None:
    page = await api.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.text
    urls = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"([^\"]+)\"", html)
    assert len(urls) == 3, urls  # the style, Swagger UI's script, the start-up script
    assert all(url.startswith("/api/v1/docs/assets/") for url in urls), urls
    assert "//" not in html  # no other origin, not even scheme-relative
    assert not re.search(r"<script>", html)  # no inline script
    for url in urls:
        asset = await api.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(("text/javascript", "text/css")), url
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert len(asset.content) > (10 if url.endswith("start.js") else 100_000), url
    # Nothing else of the package, nor a path outside it.
    for name in ("index.html", "swagger-ui-bundle.js.map", "..%2f__init__.py", "%2e%2e"):
        assert (await api.get(f"/api/v1/docs/assets/{name}")).status_code == 404, name
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["script-src"] == "'self'"
