"""Single sign-on (OpenID Connect) without a browser.

In process, on SQLite and PostgreSQL: users made and refreshed from claims (matched by issuer and
subject, never taking over a local user), roles from the group mapping, the sealed flow, and
password login kept for administrators. Against the real test provider (Node's oidc-provider) and
a real server, walked through with httpx: a whole sign-in, the ID token's checks (nonce,
audience, signature), the issuer's discovery, and the answers that are refused."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestra.errors import Unauthenticated
from orchestra.oidc_settings import OidcSettings
from orchestra.services.container import Services
from orchestra.services.oidc import OidcClient, ProviderUnavailable, SignInInvalid
from orchestra.services.sso import Flow, SignInRefused, SsoService
from tests.support.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    PASSWORD,
    SignIn,
    SsoSite,
    callback_parameters,
    start_sso_site,
)
from tests.support.processes import TaggedProcesses, free_port

# One worker runs the module: its provider and server are started once.
pytestmark = pytest.mark.xdist_group("sso")
ISSUER = "https://id.example.com"
GROUP_ROLES = {"admins": ("administrator",), "ops": ("operator",)}


def sso_of(services: Services, issuer: str = ISSUER, **changes: Any) -> SsoService:
    settings = OidcSettings(
        issuer=issuer, client_id="orchestra", group_roles=GROUP_ROLES, **changes
    )
    return SsoService(
        services.db, services.clock, settings, services.keyring, services.users, "http://x"
    )


def claims(sub: str, **more: Any) -> dict[str, Any]:
    return {"sub": sub, "iss": ISSUER, **more}


# In process: users from claims.


async def test_first_login_creates_the_user_and_later_ones_match_the_subject(
    services: Services,
) -> None:
    sso = sso_of(services)
    first = claims("s-1", preferred_username="dana", name="Dana D", groups=["ops", "team-a"])
    user = await sso.provision(first)
    assert (user.identifier, user.display_name) == ("dana", "Dana D")
    assert user.groups == ["ops", "team-a"] and user.roles == ["operator"]
    # Renamed at the provider, moved from ops to admins: the same user, roles following groups.
    later = claims("s-1", preferred_username="dana2", groups=["admins"])
    user = await sso.provision(later)
    assert user.identifier == "dana" and user.groups == ["admins"]
    assert user.roles == ["administrator"]
    assert [u.identifier for u in (await services.users.list_users(None, 100))[0]] == ["dana"]


async def test_roles_given_by_hand_stay_and_mapped_ones_follow_the_groups(
    services: Services,
) -> None:
    sso = sso_of(services)
    await sso.provision(claims("s-2", preferred_username="erin", groups=["ops"]))
    await services.users.update_user("erin", {"roles": ["operator", "auditor"]})
    user = await sso.provision(claims("s-2", preferred_username="erin", groups=[]))
    assert user.roles == ["auditor"] and user.groups == []


async def test_a_local_user_of_the_same_identifier_is_never_taken_over(
    services: Services,
) -> None:
    await services.users.create_user("carol", roles=["viewer"], password=PASSWORD)
    sso = sso_of(services)
    with pytest.raises(SignInRefused, match="'carol' already exists here"):
        await sso.provision(claims("s-3", preferred_username="carol", groups=["admins"]))
    carol = await services.users.get_user("carol")
    assert carol.roles == ["viewer"] and carol.groups == []


async def test_another_providers_user_of_the_same_identifier_is_not_taken_over(
    services: Services,
) -> None:
    await sso_of(services).provision(claims("s-4", preferred_username="frank"))
    other = sso_of(services, issuer="https://other.example.com")
    with pytest.raises(SignInRefused, match="already exists"):
        await other.provision(claims("s-4", preferred_username="frank"))


async def test_a_disabled_user_is_refused(services: Services) -> None:
    sso = sso_of(services)
    await sso.provision(claims("s-5", preferred_username="gina"))
    await services.users.update_user("gina", {"is_enabled": False})
    with pytest.raises(SignInRefused, match="disabled"):
        await sso.provision(claims("s-5", preferred_username="gina"))


async def test_no_one_signs_in_as_the_local_workers_account(services: Services) -> None:
    """Their workers are approved without an administrator: an identity provider's user named
    like them would get approved workers of their own."""
    sso = sso_of(services)
    with pytest.raises(SignInRefused, match="reserved"):
        await sso.provision(claims("s-lw", preferred_username="local-worker"))
    assert [u.identifier for u in (await services.users.list_users(None, 100))[0]] == []


async def test_the_identifier_claim_must_be_an_identifier(services: Services) -> None:
    sso = sso_of(services)
    with pytest.raises(SignInRefused, match="cannot be a user identifier"):
        await sso.provision(claims("s-6", preferred_username="../root"))
    # No preferred_username: the subject; another claim when configured.
    assert (await sso.provision(claims("s-7"))).identifier == "s-7"
    by_email = sso_of(services, user_claim="email")
    with pytest.raises(SignInRefused, match="'email'"):
        await by_email.provision(claims("s-8", email="h@example.com"))
    assert (await services.users.list_users(None, 100))[0][0].identifier == "s-7"


async def test_groups_claim_is_read_leniently(services: Services) -> None:
    sso = sso_of(services, groups_claim="roles")
    user = await sso.provision(claims("s-9", roles="ops", groups=["admins"]))
    assert user.groups == ["ops"] and user.roles == ["operator"]
    user = await sso.provision(claims("s-9", roles=["ops", 3, "", "ops", "x" * 300]))
    assert user.groups == ["ops"]


def sso_flow(services: Services) -> Flow:
    return Flow("state", "nonce", "verifier", "/projects", services.clock.now().timestamp() + 60)


async def test_the_sealed_flow_refuses_tampering_and_age(services: Services) -> None:
    sso = sso_of(services)
    flow = sso.unseal(sso.seal(sso_flow(services)))
    assert flow.next == "/projects"
    sealed = sso.seal(sso_flow(services))
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    for bad in (None, "", tampered, "enc:v1:nonsense"):
        with pytest.raises(SignInInvalid):
            sso.unseal(bad)
    other_purpose = services.keyring.encrypt('{"state": "x"}', "secret:p:NAME")
    with pytest.raises(SignInInvalid):
        sso.unseal(other_purpose)
    old = dataclasses.replace(sso_flow(services), expires=services.clock.now().timestamp() - 1)
    with pytest.raises(SignInInvalid, match="took too long"):
        sso.unseal(sso.seal(old))


async def test_password_login_kept_for_administrators(services: Services) -> None:
    await services.users.create_user("root", roles=["administrator"], password=PASSWORD)
    await services.users.create_user("olive", roles=["operator"], password=PASSWORD)
    services.users.local_login = "administrators"
    with pytest.raises(Unauthenticated, match="kept for administrators"):
        await services.users.login("olive", PASSWORD, "10.0.0.1")
    with pytest.raises(Unauthenticated, match="wrong user or password"):
        await services.users.login("olive", "wrong", "10.0.0.1")
    token, _ = await services.users.login("root", PASSWORD, "10.0.0.1")
    assert token.user == "root"
    services.users.local_login = "all"
    assert (await services.users.login("olive", PASSWORD, "10.0.0.1"))[0].user == "olive"


async def test_without_single_sign_on_the_routes_are_404_and_no_button(
    services: Services,
) -> None:
    from orchestra.web.app import create_app
    from orchestra.web.site.pages import install_site, site_router

    app = create_app(services, site=(site_router(), install_site))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ("/login/sso", "/login/sso/callback?code=x&state=y"):
            answer = await client.get(path)
            assert answer.status_code == 404 and "not configured" in answer.text
        login = await client.get("/login")
        assert login.status_code == 200 and 'id="sso-login"' not in login.text


# Against the real provider and a real server.


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoSite]:
    directory = tmp_path_factory.mktemp("sso")
    processes = TaggedProcesses(directory)
    try:
        built = start_sso_site(processes, directory)
        built.provider.set_account("dana", name="Dana D", groups=["ops", "team-a"])
        built.provider.set_account("ivan", groups=["team-x"])  # for the refused sign-ins
        try:
            yield built
        finally:
            built.client.close()
    finally:
        processes.close()


@pytest.fixture
def walk(site: SsoSite) -> Iterator[SignIn]:
    sign_in = SignIn(site)
    yield sign_in
    sign_in.close()


def test_a_whole_sign_in_ends_in_a_session_of_the_new_user(site: SsoSite, walk: SignIn) -> None:
    location = walk.to_provider("/profile")
    assert location.startswith(site.provider.issuer + "/auth?")
    sent = callback_parameters(location)
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert sent["scope"] == "openid profile email groups" and sent["nonce"] and sent["state"]
    flow_cookie = walk.browser.cookies.get("orchestra_sso_flow")
    assert flow_cookie and sent["state"] not in flow_cookie  # sealed, not in clear
    answer = walk.back(walk.at_provider(location, "dana"))
    assert answer.status_code == 303 and answer.headers["location"] == "/profile"
    assert "orchestra_session" in answer.cookies
    assert walk.page("/profile").status_code == 200
    user = site.client.request("GET", "/users/dana", 200).json()
    assert user["display_name"] == "Dana D" and user["roles"] == ["operator"]
    assert user["groups"] == ["ops", "team-a"]
    # A login session is not an API token: not listed with them.
    tokens = site.client.request("GET", "/users/dana/tokens", 200).json()["items"]
    assert tokens == []
    with sqlite3.connect(site.database_url.removeprefix("sqlite:///")) as database:
        query = "SELECT is_session FROM user_authentication WHERE user = 'dana'"
        assert database.execute(query).fetchall() == [(1,)]  # a login session, not a token


def test_a_tampered_state_is_refused(site: SsoSite, walk: SignIn) -> None:
    callback = walk.at_provider(walk.to_provider(), "ivan")
    parameters = callback_parameters(callback)
    tampered = callback.replace(parameters["state"], "x" + parameters["state"][1:])
    answer = walk.back(tampered)
    assert answer.status_code == 400 and "state does not match" in answer.text
    assert "orchestra_session" not in answer.cookies
    # The flow is over: the real answer, after that, finds no flow either.
    assert walk.back(callback).status_code == 400


def test_an_answer_without_a_flow_is_refused(site: SsoSite, walk: SignIn) -> None:
    callback = walk.at_provider(walk.to_provider(), "ivan")
    walk.browser.cookies.delete("orchestra_sso_flow")
    answer = walk.back(callback)
    assert answer.status_code == 400 and "not started from this browser" in answer.text
    assert "orchestra_session" not in answer.cookies


def test_the_users_refusal_at_the_provider_is_shown(site: SsoSite, walk: SignIn) -> None:
    page = walk.login_page(walk.to_provider())
    response = walk.back(walk.follow_to_site(walk.browser.post(f"{page.url}/abort")))
    assert response.status_code == 403
    assert "access_denied" in response.text and "orchestra_session" not in response.cookies


def test_a_refusal_is_logged_on_one_line(site: SsoSite, walk: SignIn) -> None:
    description = "bad\nINFO forged line <b>"
    answer = walk.browser.get(
        f"{site.url}/login/sso/callback",
        params={"error": "server_error", "error_description": description},
    )
    assert answer.status_code == 403 and "forged line &lt;b&gt;" in answer.text
    log = (site.data_dir / "server.log").read_text()
    assert "server_error: bad\\nINFO forged line <b>" in log
    assert "\nINFO forged line" not in log


def test_a_code_used_twice_is_refused_by_the_provider(site: SsoSite, walk: SignIn) -> None:
    callback = walk.at_provider(walk.to_provider(), "ivan")
    sealed = walk.browser.cookies.get("orchestra_sso_flow")
    assert walk.back(callback).status_code == 303
    walk.browser.cookies.set("orchestra_sso_flow", sealed or "", path="/login/sso")
    answer = walk.back(callback)
    assert answer.status_code == 502 and "refused the code" in answer.text


def test_a_provider_that_is_down_gives_a_clear_page(tmp_path: Path) -> None:
    processes = TaggedProcesses(tmp_path)
    try:
        dead = start_sso_site(processes, tmp_path, issuer=f"http://127.0.0.1:{free_port()}")
        walk = SignIn(dead)
        answer = walk.start()
        walk.close()
        dead.client.close()
        assert answer.status_code == 502 and "could not be read" in answer.text
        log = processes.processes[-1].log()
        assert "single sign-on failed (502)" in log and "Traceback" not in log
    finally:
        processes.close()


# The ID token's checks, with Orchestra's client code against the real provider.


def _code_for(site: SsoSite, client_id: str, secret: str, nonce: str) -> tuple[str, str]:
    """An authorization code for `client_id` (redirected to Orchestra's callback URL, which is
    not called) and its PKCE verifier."""
    scopes = ("openid", "profile", "groups")
    settings = OidcSettings(
        issuer=site.provider.issuer, client_id=client_id, client_secret=secret, scopes=scopes
    )
    verifier = "v" * 64
    redirect = f"{site.url}/login/sso/callback"
    url = asyncio.run(OidcClient(settings).authorization_url(redirect, "st", nonce, verifier))
    walk = SignIn(site)
    try:
        callback = walk.at_provider(url, "ivan")
    finally:
        walk.close()
    return callback_parameters(callback)["code"], verifier


def _orchestra_client(site: SsoSite) -> OidcClient:
    return OidcClient(
        OidcSettings(issuer=site.provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    )


def test_id_token_checks_nonce_audience_and_signature(site: SsoSite) -> None:
    redirect = f"{site.url}/login/sso/callback"
    client = _orchestra_client(site)

    async def verify(id_token: str, nonce: str) -> dict[str, Any]:
        return await client.verify_id_token(id_token, nonce)

    code, verifier = _code_for(site, CLIENT_ID, CLIENT_SECRET, "n-1")
    id_token = asyncio.run(client.exchange(code, verifier, redirect))["id_token"]
    assert asyncio.run(verify(id_token, "n-1"))["preferred_username"] == "ivan"
    with pytest.raises(SignInInvalid, match="nonce"):
        asyncio.run(verify(id_token, "n-2"))
    head, body, signature = id_token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    with pytest.raises(SignInInvalid, match="signature"):
        asyncio.run(verify(f"{head}.{body}.{flipped}", "n-1"))
    # A token the provider made for another client is not for Orchestra.
    other = OidcClient(
        OidcSettings(
            issuer=site.provider.issuer, client_id=OTHER_CLIENT_ID, client_secret="another secret"
        )
    )
    code, verifier = _code_for(site, OTHER_CLIENT_ID, "another secret", "n-3")
    foreign = asyncio.run(other.exchange(code, verifier, redirect))["id_token"]
    with pytest.raises(SignInInvalid, match="aud"):
        asyncio.run(verify(foreign, "n-3"))


def test_the_code_is_refused_without_its_pkce_verifier(site: SsoSite) -> None:
    code, _ = _code_for(site, CLIENT_ID, CLIENT_SECRET, "n-4")
    client = _orchestra_client(site)
    with pytest.raises(ProviderUnavailable, match="refused the code"):
        asyncio.run(client.exchange(code, "w" * 64, f"{site.url}/login/sso/callback"))


def test_discovery_checks_the_issuer_and_says_when_the_provider_is_down(site: SsoSite) -> None:
    respelled = site.provider.issuer.replace("127.0.0.1", "localhost")
    client = OidcClient(OidcSettings(issuer=respelled, client_id=CLIENT_ID))
    with pytest.raises(ProviderUnavailable, match="names issuer"):
        asyncio.run(client.metadata())
    down = OidcClient(OidcSettings(issuer=f"http://127.0.0.1:{free_port()}", client_id="c"))
    with pytest.raises(ProviderUnavailable, match="could not be read"):
        asyncio.run(down.metadata())


async def test_claims_missing_from_the_id_token_come_from_userinfo(
    site: SsoSite, services: Services
) -> None:
    code, verifier = await asyncio.to_thread(_code_for, site, CLIENT_ID, CLIENT_SECRET, "n-5")
    settings = OidcSettings(
        issuer=site.provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    sso = SsoService(
        services.db, services.clock, settings, services.keyring, services.users, site.url
    )
    tokens = await sso.client.exchange(code, verifier, f"{site.url}/login/sso/callback")
    found = await sso._complete({"sub": "ivan", "name": "kept"}, tokens["access_token"])
    assert found == {
        "sub": "ivan",
        "name": "kept",
        "preferred_username": "ivan",
        "groups": ["team-x"],
    }
    # Userinfo speaking of another subject is not believed.
    assert await sso._complete({"sub": "mallory"}, tokens["access_token"]) == {"sub": "mallory"}
