"""A real OpenID provider for the single sign-on tests (tests/support/oidc/provider.mjs, the npm
package `oidc-provider` on Node, installed by `make oidc-provider`), and an Orchestra server
configured for it; plus a browser-less walk through a sign-in with httpx."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.accounts import create_token, orchestra_admin
from tests.support.api import Api
from tests.support.processes import Process, TaggedProcesses, free_port, orchestra_argv
from tests.support.waiting import wait_until

OIDC_DIR = Path(__file__).parent / "oidc"
CLIENT_ID = "orchestra"
CLIENT_SECRET = "test client secret"
OTHER_CLIENT_ID = "another-app"  # a second client: its ID tokens are not for Orchestra
PASSWORD = "correct horse battery"  # of the local users, and of the provider's accounts


@dataclass
class OidcProvider:
    issuer: str
    config_path: Path
    process: Process
    config: dict[str, Any] = field(default_factory=dict)

    def set_account(self, login: str, **claims: Any) -> None:
        """Add or change an account (the provider reads its accounts at each login)."""
        self.config["accounts"][login] = {
            "password": PASSWORD,
            "claims": {"preferred_username": login, **claims},
        }
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.config))
        os.replace(temporary, self.config_path)


def start_provider(
    processes: TaggedProcesses, directory: Path, redirect_uris: list[str]
) -> OidcProvider:
    """The test provider on a free port, with Orchestra's client (redirecting to
    `redirect_uris`) and another client, and no account yet."""
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test OpenID provider is not installed: run `make oidc-provider`")
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js (`node`) is missing: the single sign-on tests need it")
    port = free_port()
    config: dict[str, Any] = {
        "port": port,
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": redirect_uris,
            },
            {
                "client_id": OTHER_CLIENT_ID,
                "client_secret": "another secret",
                "redirect_uris": redirect_uris,
            },
        ],
        "accounts": {},
    }
    path = directory / "oidc-provider.json"
    path.write_text(json.dumps(config))
    process = processes.spawn(
        "oidc-provider", [node, str(OIDC_DIR / "provider.mjs"), str(path)], cwd=OIDC_DIR
    )
    issuer = process.wait_for_url(60)
    wait_until(
        lambda: _answers(f"{issuer}/.well-known/openid-configuration"), 30, "the OpenID provider"
    )
    return OidcProvider(issuer, path, process, config)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class SsoSite:
    url: str
    client: Api  # the administrator's
    provider: OidcProvider
    database_url: str
    data_dir: Path


def start_sso_site(
    processes: TaggedProcesses,
    directory: Path,
    *,
    settings: dict[str, str] | None = None,
    issuer: str | None = None,
) -> SsoSite:
    """The provider, and an all-in-one server on SQLite configured for it (or for `issuer`),
    with a local administrator `admin` (PASSWORD) and `settings` added to its environment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = start_provider(processes, directory, [f"{url}/login/sso/callback"])
    database_url = f"sqlite:///{directory / 'orchestra.sqlite'}"
    arguments = ["create-user", "admin", "--role", "administrator", "--password-stdin"]
    orchestra_admin(database_url, directory, *arguments, stdin=PASSWORD)
    token = create_token(database_url, directory, "admin")
    secret_file = directory / "oidc-client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    environment = {
        "ORCHESTRA_OIDC_CLIENT_ID": CLIENT_ID,
        "ORCHESTRA_OIDC_CLIENT_SECRET_FILE": str(secret_file),
        "ORCHESTRA_OIDC_NAME": "Test provider",
        "ORCHESTRA_OIDC_SCOPES": "openid profile email groups",
        "ORCHESTRA_OIDC_GROUP_ROLES": "admins=administrator,ops=operator",
        **(settings or {}),
    }
    argv = orchestra_argv(
        "server", "--database", database_url, "--data-dir", str(directory), "--port", str(port)
    )
    argv += ["--oidc-issuer", issuer or provider.issuer]
    server = processes.spawn("server", argv, environment)
    served = server.wait_until_serving()
    assert served == url, served
    return SsoSite(url, Api(url, token), provider, database_url, directory)


class SignIn:
    """One browser's walk through a sign-in, step by step (a test may stop or alter a step)."""

    def __init__(self, site: SsoSite) -> None:
        self.site = site
        self.browser = httpx.Client(follow_redirects=False, timeout=30)

    def close(self) -> None:
        self.browser.close()

    def start(self, next_path: str = "/") -> httpx.Response:
        """Orchestra's answer to "Sign in with...": a redirect to the provider."""
        return self.browser.get(f"{self.site.url}/login/sso", params={"next": next_path})

    def to_provider(self, next_path: str = "/") -> str:
        """The provider's authorization URL Orchestra sends the browser to."""
        start = self.start(next_path)
        assert start.status_code == 303, start.text
        return str(start.headers["location"])

    def login_page(self, authorization_url: str) -> httpx.Response:
        """The provider's login page, reached from its authorization URL."""
        response = self.browser.get(authorization_url)
        while response.status_code in (302, 303):
            response = self.browser.get(response.url.join(response.headers["location"]))
        assert response.status_code == 200 and "/interaction/" in str(response.url), response.text
        return response

    def at_provider(self, authorization_url: str, login: str, password: str = PASSWORD) -> str:
        """Through the provider's login form; the URL it sends the browser back to."""
        page = self.login_page(authorization_url)
        response = self.browser.post(
            f"{page.url}/login", data={"login": login, "password": password}
        )
        return self.follow_to_site(response)

    def follow_to_site(self, response: httpx.Response) -> str:
        """Follow the provider's redirects to the first URL of Orchestra's."""
        while response.status_code in (302, 303):
            location = str(response.url.join(response.headers["location"]))
            if location.startswith(self.site.url):
                return location
            response = self.browser.get(location)
        raise AssertionError(f"the provider did not send the browser back: {response.text[:500]}")

    def back(self, callback: str) -> httpx.Response:
        return self.browser.get(callback)

    def run(self, login: str, *, next_path: str = "/") -> httpx.Response:
        return self.back(self.at_provider(self.to_provider(next_path), login))

    def page(self, path: str) -> httpx.Response:
        return self.browser.get(f"{self.site.url}{path}")


def callback_parameters(callback: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
