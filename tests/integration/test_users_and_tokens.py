"""Users and tokens through the API: expiry, disabled users, password change, revocation,
login limiting, re-hashing of older password hashes, and no secret or hash in any response."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from orchestra.services import credentials
from orchestra.services.container import Services
from orchestra.storage import records
from orchestra.storage.schema import user_authentication
from orchestra.web.app import create_app
from tests.conftest import MakeUser, build_services
from tests.helpers import ManualClock, RecordingClient, auth, leaks, stored_secret_values

PASSWORD = "first password 1"


@pytest.fixture
async def clocked(
    clocked_services: Services,
) -> AsyncIterator[tuple[Services, RecordingClient]]:
    """Services and API on a clock the test moves."""
    transport = httpx.ASGITransport(app=create_app(clocked_services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield clocked_services, RecordingClient(http)


def basic(user: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


async def login(api: RecordingClient, user: str, password: str) -> httpx.Response:
    return await api.post("/api/v1/me/login", json={"user": user, "password": password})


async def test_token_expired_is_refused_with_401(
    clocked: tuple[Services, RecordingClient], clock: ManualClock
) -> None:
    services, api = clocked
    await services.users.create_user("alice", roles=["viewer"])
    token, secret = await services.users.create_token(
        "alice", "short", clock.now() + timedelta(seconds=2)
    )
    assert (await api.get("/api/v1/me", headers=auth(secret))).status_code == 200
    clock.advance(1)
    assert (await api.get("/api/v1/projects", headers=auth(secret))).status_code == 200
    clock.advance(2)
    expired = await api.get("/api/v1/me", headers=auth(secret))
    assert expired.status_code == 401
    assert expired.json()["detail"]
    assert (await api.get("/api/v1/projects", headers=auth(secret))).status_code == 401
    assert token.expiration_date is not None


async def test_token_last_used_date_is_recorded(
    clocked: tuple[Services, RecordingClient], clock: ManualClock
) -> None:
    services, api = clocked
    await services.users.create_user("alice")
    token, secret = await services.users.create_token("alice", None, None)
    assert token.last_used_date is None
    assert (await api.get("/api/v1/me", headers=auth(secret))).status_code == 200
    listed = (await api.get("/api/v1/me/tokens", headers=auth(secret))).json()["items"]
    assert [t["identifier"] for t in listed] == [token.identifier]
    assert listed[0]["last_used_date"] is not None


async def test_token_with_past_or_naive_expiration_is_refused(
    api: RecordingClient, make_user: MakeUser
) -> None:
    secret = await make_user("alice")
    past = await api.post(
        "/api/v1/me/tokens",
        json={"expiration_date": "2000-01-01T00:00:00Z"},
        headers=auth(secret),
    )
    assert past.status_code == 422
    naive = await api.post(
        "/api/v1/me/tokens", json={"expiration_date": "2999-01-01T00:00:00"}, headers=auth(secret)
    )
    assert naive.status_code in (400, 422)


async def test_token_secret_has_prefix_is_shown_once_and_stored_hashed(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    created = await api.post("/api/v1/me/tokens", json={"description": "ci"}, headers=auth(admin))
    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("orc_")
    assert len(secret) >= len("orc_") + 43  # 32 random bytes, base64url
    assert set(body) - {"secret"} == {
        "identifier",
        "user",
        "description",
        "expiration_date",
        "last_used_date",
        "creation_date",
        "update_date",
        "scopes",  # null: all the user's rights (issue 20)
        "projects",
    }
    assert (await api.get("/api/v1/me", headers=auth(secret))).json()["identifier"] == "admin"
    for path in ("/api/v1/me/tokens", "/api/v1/users/admin/tokens"):
        listed = await api.get(path, headers=auth(admin))
        assert listed.status_code == 200
        items = listed.json()["items"]
        assert body["identifier"] in {t["identifier"] for t in items}
        assert all("secret" not in t for t in items)
        assert secret not in listed.text
    async with services.db.read() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(user_authentication).where(
                        user_authentication.c.identifier == body["identifier"]
                    )
                )
            )
            .mappings()
            .one()
        )
    assert row["secret"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["hash_function"] == "sha256"


async def test_token_of_another_user_is_created_by_an_administrator(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    await make_user("bob", ["viewer"])
    created = await api.post("/api/v1/users/bob/tokens", json={}, headers=auth(admin))
    assert created.status_code == 201
    secret = created.json()["secret"]
    me = await api.get("/api/v1/me", headers=auth(secret))
    assert me.json()["identifier"] == "bob"


async def test_basic_authentication_takes_the_user_and_a_token(
    api: RecordingClient, make_user: MakeUser
) -> None:
    secret = await make_user("alice", ["viewer"])
    await make_user("bob", ["viewer"])
    assert (await api.get("/api/v1/me", headers=basic("alice", secret))).status_code == 200
    assert (await api.get("/api/v1/me", headers=basic("bob", secret))).status_code == 401
    assert (await api.get("/api/v1/me", headers=auth("orc_not-a-token"))).status_code == 401
    assert (await api.get("/api/v1/me", headers=auth("not-even-prefixed"))).status_code == 401
    garbled = {"Authorization": "Basic %%%not-base64"}
    assert (await api.get("/api/v1/me", headers=garbled)).status_code == 401


async def test_user_disabled_gets_401_and_enabled_again_works(
    api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    secret = await make_user("alice", ["operator"])
    assert (await api.get("/api/v1/projects", headers=auth(secret))).status_code == 200
    disabled = await api.patch(
        "/api/v1/users/alice", json={"is_enabled": False}, headers=auth(admin)
    )
    assert disabled.status_code == 200
    assert disabled.json()["is_enabled"] is False
    assert (await api.get("/api/v1/me", headers=auth(secret))).status_code == 401
    refused = await api.post("/api/v1/projects", json={"identifier": "p"}, headers=auth(secret))
    assert refused.status_code == 401
    # Anonymous routes still answer a disabled user, as they answer anyone.
    assert (await api.get("/api/v1/health", headers=auth(secret))).status_code == 200
    await api.patch("/api/v1/users/alice", json={"is_enabled": True}, headers=auth(admin))
    assert (await api.get("/api/v1/me", headers=auth(secret))).status_code == 200


async def test_user_disabled_cannot_log_in(api: RecordingClient, services: Services) -> None:
    await services.users.create_user("alice", password=PASSWORD, is_enabled=False)
    assert (await login(api, "alice", PASSWORD)).status_code == 401


async def test_password_change_then_old_password_fails_and_new_one_works(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("alice", roles=["viewer"], password=PASSWORD)
    first = await login(api, "alice", PASSWORD)
    assert first.status_code == 200
    body = first.json()
    assert body["user"] == "alice"
    assert body["token"].startswith("orc_")
    assert body["expiration_date"]
    token = body["token"]
    wrong = await api.post(
        "/api/v1/me/password",
        json={"old_password": "not my password", "new_password": "second password 2"},
        headers=auth(token),
    )
    assert wrong.status_code in (400, 422)
    short = await api.post(
        "/api/v1/me/password",
        json={"old_password": PASSWORD, "new_password": "short"},
        headers=auth(token),
    )
    assert short.status_code == 422
    changed = await api.post(
        "/api/v1/me/password",
        json={"old_password": PASSWORD, "new_password": "second password 2"},
        headers=auth(token),
    )
    assert changed.status_code == 204
    assert (await login(api, "alice", PASSWORD)).status_code == 401
    assert (await login(api, "alice", "second password 2")).status_code == 200


async def test_password_set_by_administrator_replaces_the_old_one(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    await services.users.create_user("alice", password=PASSWORD)
    response = await api.patch(
        "/api/v1/users/alice", json={"password": "reset password 3"}, headers=auth(admin)
    )
    assert response.status_code == 200
    assert (await login(api, "alice", PASSWORD)).status_code == 401
    assert (await login(api, "alice", "reset password 3")).status_code == 200


async def test_token_revoked_with_delete_is_refused_afterwards(
    api: RecordingClient, make_user: MakeUser
) -> None:
    main = await make_user("alice", ["viewer"])
    await make_user("bob", ["viewer"])
    created = (await api.post("/api/v1/me/tokens", json={}, headers=auth(main))).json()
    assert (await api.get("/api/v1/me", headers=auth(created["secret"]))).status_code == 200
    path = f"/api/v1/me/tokens/{created['identifier']}"
    assert (await api.delete(path, headers=auth(main))).status_code == 204
    assert (await api.get("/api/v1/me", headers=auth(created["secret"]))).status_code == 401
    assert (await api.delete(path, headers=auth(main))).status_code == 404
    assert (await api.get("/api/v1/me", headers=auth(main))).status_code == 200


async def test_token_of_another_user_cannot_be_revoked_through_me(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    alice = await make_user("alice", ["viewer"])
    bob = await make_user("bob", ["viewer"])
    bob_token, _ = await services.users.create_token("bob", None, None)
    refused = await api.delete(f"/api/v1/me/tokens/{bob_token.identifier}", headers=auth(alice))
    assert refused.status_code == 404
    assert (await api.get("/api/v1/me", headers=auth(bob))).status_code == 200


async def test_logout_revokes_only_the_token_used(services: Services, api: RecordingClient) -> None:
    await services.users.create_user("alice", password=PASSWORD)
    _token, other = await services.users.create_token("alice", "kept", None)
    session = (await login(api, "alice", PASSWORD)).json()["token"]
    assert (await api.post("/api/v1/me/logout", headers=auth(session))).status_code == 204
    assert (await api.get("/api/v1/me", headers=auth(session))).status_code == 401
    assert (await api.get("/api/v1/me", headers=auth(other))).status_code == 200


async def test_login_unknown_user_answers_like_wrong_password(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("alice", password=PASSWORD)
    known = await login(api, "alice", "wrong password")
    unknown = await login(api, "nobody", "wrong password")
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
    assert known.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


async def test_login_limited_after_repeated_failures_for_known_and_unknown_users(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("alice", password=PASSWORD)
    answers: dict[str, list[httpx.Response]] = {"alice": [], "nobody": []}
    for user, responses in answers.items():
        for _ in range(11):
            responses.append(await login(api, user, "wrong password"))
    for user, responses in answers.items():
        codes = [r.status_code for r in responses]
        assert codes[:10] == [401] * 10, user
        assert codes[10] == 429, user

    # Same statuses and bodies whether the user exists or not (the wait is in seconds).
    def shape(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, re.sub(r"\d+", "N", response.json()["detail"])

    assert [shape(r) for r in answers["alice"]] == [shape(r) for r in answers["nobody"]]
    # Even the right password is refused while the user is limited.
    assert (await login(api, "alice", PASSWORD)).status_code == 429
    assert answers["alice"][10].headers.get("retry-after")


async def test_login_rehashes_a_pbkdf2_password_to_argon2id(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("alice")
    hashed = credentials.hash_password_pbkdf2(PASSWORD)
    async with services.db.transaction() as conn:
        await records.insert(
            conn,
            user_authentication,
            {
                "identifier": str(uuid.uuid4()),
                "user": "alice",
                "type": "password",
                "description": "password",
                "hash_function": hashed.hash_function,
                "hash_function_parameters": hashed.hash_function_parameters,
                "hash_function_salt": hashed.hash_function_salt,
                "secret": hashed.secret,
                "expiration_date": None,
            },
        )

    async def stored() -> sa.RowMapping:
        async with services.db.read() as conn:
            query = sa.select(user_authentication).where(
                user_authentication.c.user == "alice", user_authentication.c.type == "password"
            )
            return (await conn.execute(query)).mappings().one()

    assert (await stored())["hash_function"] == "pbkdf2_sha256"
    assert (await login(api, "alice", "not the password")).status_code == 401
    assert (await stored())["hash_function"] == "pbkdf2_sha256"
    assert (await login(api, "alice", PASSWORD)).status_code == 200
    after = await stored()
    assert after["hash_function"] == "argon2id"
    assert after["hash_function_parameters"] == credentials.ARGON2_PARAMETERS
    assert after["secret"] != hashed.secret
    assert (await login(api, "alice", PASSWORD)).status_code == 200


async def test_responses_never_carry_passwords_secrets_or_hashes(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    admin = await make_user("admin", ["administrator"])
    auditor = await make_user("auditor", ["auditor"])
    created = await api.post(
        "/api/v1/users",
        json={"identifier": "alice", "roles": ["viewer"], "password": PASSWORD},
        headers=auth(admin),
    )
    assert created.status_code == 201
    session = (await login(api, "alice", PASSWORD)).json()["token"]
    await api.post("/api/v1/users/alice/tokens", json={}, headers=auth(admin))
    await api.post("/api/v1/me/tokens", json={}, headers=auth(session))
    await api.patch("/api/v1/users/alice", json={"password": "another one 4"}, headers=auth(admin))
    for caller in (admin, auditor):
        for path in (
            "/api/v1/users",
            "/api/v1/users/alice",
            "/api/v1/users/alice/tokens",
            "/api/v1/users/admin/tokens",
            "/api/v1/me",
            "/api/v1/me/tokens",
        ):
            assert (await api.get(path, headers=auth(caller))).status_code == 200
    stored = await stored_secret_values(services)
    assert len([v for v in stored if v]) > 5
    problems = leaks(api.exchanges, [*stored, PASSWORD, "another one 4"])
    assert problems == []
    # The scan itself sees a leak when there is one.
    planted = leaks(api.exchanges[:1], [api.exchanges[0].text[:20]])
    assert planted


async def test_a_change_made_through_another_server_is_honoured_within_5_seconds(
    services: Services, database_url: str, tmp_path: Path
) -> None:
    """Authentications are cached briefly: a token revoked, or a user disabled, through
    another API server (its own process, its own cache) is refused here within 5 seconds,
    and at once when the change is made through this one."""
    other = build_services(database_url, tmp_path / "other")
    try:
        await services.users.create_user("alice", roles=["viewer"])
        await services.users.create_user("bob", roles=["viewer"])
        revoked, revoked_secret = await services.users.create_token("alice", None, None)
        _kept, kept_secret = await services.users.create_token("alice", None, None)
        _bob, bob_secret = await services.users.create_token("bob", None, None)
        for secret in (revoked_secret, kept_secret, bob_secret):
            assert await services.users.authenticate(secret) is not None  # now cached here

        await other.users.revoke_token("alice", revoked.identifier)
        await other.users.update_user("bob", {"is_enabled": False})
        assert await other.users.authenticate(revoked_secret) is None  # the server that did it
        assert await other.users.authenticate(bob_secret) is None
        deadline = time.monotonic() + 5.0
        while await services.users.authenticate(revoked_secret) is not None or (
            await services.users.authenticate(bob_secret) is not None
        ):
            assert time.monotonic() < deadline, "still accepted here 5 s after the change"
            await asyncio.sleep(0.05)
        assert await services.users.authenticate(kept_secret) is not None

        # Made through this server: refused at once.
        await services.users.update_user("bob", {"is_enabled": True})
        assert await services.users.authenticate(bob_secret) is not None
        await services.users.update_user("bob", {"roles": []})
        caller = await services.users.authenticate(bob_secret)
        assert caller is not None and caller.user.roles == []
        await services.users.update_user("bob", {"is_enabled": False})
        assert await services.users.authenticate(bob_secret) is None
    finally:
        await other.close()
