"""Browser tests: a real all-in-one server (SQLite, one local worker) and Debian's Chromium
driven by Playwright. Screenshots of the main pages go to tests/artifacts/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.accounts import create_token, orchestra_admin
from tests.support.api import Api
from tests.support.cluster import TEST_SETTINGS
from tests.support.processes import TaggedProcesses, orchestra_argv
from tests.support.waiting import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent.parent / "artifacts" / "screenshots"
EXAMPLES = Path(__file__).parent.parent.parent / "examples" / "orchestra.yaml"
PASSWORD = "correct horse battery"


@dataclass
class Site:
    url: str
    client: Api  # the administrator's
    data_dir: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """An all-in-one server with one local worker on SQLite, users `admin` and `viewer` (with
    PASSWORD) and the example projects."""
    data_dir = tmp_path_factory.mktemp("site")
    database_url = f"sqlite:///{data_dir / 'orchestra.sqlite'}"
    for user, role in (("admin", "administrator"), ("viewer", "viewer")):
        arguments = ["create-user", user, "--role", role, "--password-stdin"]
        orchestra_admin(database_url, data_dir, *arguments, stdin=PASSWORD)
    token = create_token(database_url, data_dir, "admin")
    processes = TaggedProcesses(data_dir, TEST_SETTINGS)
    argv = orchestra_argv("server", "--database", database_url, "--data-dir", str(data_dir))
    server = processes.spawn("server", [*argv, "--port", "0", "--workers", "1"])
    try:
        url = server.wait_until_serving()
        site = Site(url, Api(url, token), data_dir)
        try:
            from orchestra.cli.client import load_document

            site.client.request("POST", "/apply", 200, json=load_document(EXAMPLES))
            wait_until(
                lambda: any(w["is_active"] for w in site.client.workers()), 30, "the local worker"
            )
            yield site
        finally:
            site.client.close()
    finally:
        processes.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing (Debian package `chromium`; `make test` installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def login(page: Page, site: Site, user: str = "admin") -> None:
    page.goto(f"{site.url}/login")
    page.fill("#user", user)
    page.fill("#password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{site.url}/")


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
