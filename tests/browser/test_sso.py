"""Single sign-on in Chromium against a real OpenID provider (Node's oidc-provider, started by
the tests): "Sign in with...", the provider's login page, and back logged in as a user made at
that first login; a group bound to a project, a group mapped to a global role, a local user of
the same identifier left alone, a tampered state refused, and password login kept for
administrators."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import screenshot
from tests.support.accounts import orchestra_admin
from tests.support.oidc_provider import PASSWORD, SsoSite, start_sso_site
from tests.support.processes import TaggedProcesses

pytestmark = pytest.mark.xdist_group("sso-browser")


@pytest.fixture(scope="module")
def sso_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoSite]:
    """The provider and a server for it; projects alpha and beta, group team-a an operator of
    alpha; a local viewer `carol` (PASSWORD); at the provider: dana (team-a), erin (admins,
    mapped to administrator), carol and ivan."""
    directory = tmp_path_factory.mktemp("sso-browser")
    processes = TaggedProcesses(directory)
    try:
        site = start_sso_site(processes, directory)
        try:
            for project in ("alpha", "beta"):
                site.client.put_project(project, display_name=project.title())
            member = {"group": "team-a", "role": "operator"}
            site.client.request("POST", "/projects/alpha/members", (200, 201), json=member)
            arguments = ["create-user", "carol", "--role", "viewer", "--password-stdin"]
            orchestra_admin(site.database_url, directory, *arguments, stdin=PASSWORD)
            site.provider.set_account("dana", name="Dana D", groups=["team-a"])
            site.provider.set_account("erin", name="Erin E", groups=["admins"])
            site.provider.set_account("carol", name="Not Carol", groups=["admins"])
            site.provider.set_account("ivan", groups=["team-a"])
            yield site
        finally:
            site.client.close()
    finally:
        processes.close()


def sign_in_at_provider(page: Page, site: SsoSite, login: str) -> None:
    """From Orchestra's login page, through the provider's own login page."""
    page.goto(f"{site.url}/login")
    page.click("#sso-login")
    page.wait_for_url(re.compile(re.escape(site.provider.issuer) + "/interaction/"))
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")


def test_first_sign_in_creates_the_user_who_sees_their_groups_project_only(
    page: Page, sso_site: SsoSite
) -> None:
    page.goto(f"{sso_site.url}/login")
    expect(page.locator("#sso-login")).to_have_text("Sign in with Test provider")
    screenshot(page, "login-sso")
    sign_in_at_provider(page, sso_site, "dana")
    page.wait_for_url(f"{sso_site.url}/")
    expect(page.locator("header .session")).to_contain_text("Dana D")
    user = sso_site.client.request("GET", "/users/dana", 200).json()
    assert user["roles"] == [] and user["groups"] == ["team-a"]
    page.goto(f"{sso_site.url}/projects")
    expect(page.locator("main")).to_contain_text("Alpha")
    expect(page.locator("main")).not_to_contain_text("Beta")
    response = page.goto(f"{sso_site.url}/projects/beta")
    assert response is not None and response.status == 404
    response = page.goto(f"{sso_site.url}/projects/alpha")
    assert response is not None and response.status == 200
    response = page.goto(f"{sso_site.url}/users")
    assert response is not None and response.status == 403


def test_a_group_mapped_to_a_global_role_gives_it(page: Page, sso_site: SsoSite) -> None:
    sign_in_at_provider(page, sso_site, "erin")
    page.wait_for_url(f"{sso_site.url}/")
    expect(page.locator("header nav")).to_contain_text("Users")
    response = page.goto(f"{sso_site.url}/users")
    assert response is not None and response.status == 200
    expect(page.locator("main")).to_contain_text("erin")
    user = sso_site.client.request("GET", "/users/erin", 200).json()
    assert user["roles"] == ["administrator"] and user["groups"] == ["admins"]


def test_a_local_user_of_the_same_identifier_is_not_taken_over(
    page: Page, sso_site: SsoSite
) -> None:
    sign_in_at_provider(page, sso_site, "carol")
    expect(page.locator("#sso-error")).to_contain_text("'carol' already exists here")
    screenshot(page, "sso-refused")
    assert not any(c["name"] == "orchestra_session" for c in page.context.cookies())
    carol = sso_site.client.request("GET", "/users/carol", 200).json()
    assert carol["roles"] == ["viewer"] and carol["display_name"] == "carol"
    assert carol["groups"] == []


def test_a_tampered_state_is_refused(page: Page, sso_site: SsoSite) -> None:
    provider = sso_site.provider.issuer
    tampered: list[str] = []

    def tamper(route: Route) -> None:
        """The provider's answer to its login form, followed (Playwright routes no redirect
        hop) to its redirect back to Orchestra, whose state is then altered."""
        response = route.fetch(max_redirects=0)
        location = urljoin(provider, response.headers["location"])
        while not location.startswith(sso_site.url):
            hop = page.context.request.get(location, max_redirects=0)
            location = urljoin(location, hop.headers["location"])
        parts = urlsplit(location)
        query = dict(parse_qsl(parts.query))
        query["state"] = "x" + query["state"][1:]
        tampered.append(parts._replace(query=urlencode(query)).geturl())
        route.fulfill(status=303, headers={"location": tampered[-1]})

    page.route(re.compile(re.escape(provider) + r"/interaction/[^/]+/login$"), tamper)
    sign_in_at_provider(page, sso_site, "ivan")
    expect(page.locator("#sso-error")).to_contain_text("state does not match")
    assert len(tampered) == 1 and page.url == tampered[0]
    assert not any(c["name"] == "orchestra_session" for c in page.context.cookies())
    sso_site.client.request("GET", "/users/ivan", 404)  # nobody was signed in, nor created
    page.goto(f"{sso_site.url}/profile")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fprofile"))


def test_password_login_is_kept_for_administrators(page: Page, sso_site: SsoSite) -> None:
    page.goto(f"{sso_site.url}/login")
    expect(page.locator("main")).to_contain_text("Password login is kept for administrators")
    page.fill("#user", "carol")
    page.fill("#password", PASSWORD)
    page.click("button.primary")
    expect(page.locator(".flash.bad")).to_contain_text("kept for administrators")
    page.fill("#user", "admin")
    page.fill("#password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{sso_site.url}/")
