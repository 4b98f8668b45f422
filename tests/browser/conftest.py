"""Browser tests: a real all-in-one server (SQLite, one local worker) and Debian's Chromium
driven by Playwright. Screenshots of the main pages go to tests/artifacts/screenshots/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent.parent / "artifacts" / "screenshots"
EXAMPLES = Path(__file__).parent.parent.parent / "examples" / "orchestra.yaml"
PASSWORD = "correct horse battery"
LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Site:
    url: str
    admin_token: str
    data_dir: Path

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.request(
            method, f"{self.url}/api/v1{path}", headers=headers, timeout=10, **kwargs
        )  # type: ignore[arg-type]


def _orchestra(data_dir: Path, *arguments: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "orchestra", *arguments, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ORCHESTRA_LOG_LEVEL": "WARNING"},
    )
    return result.stdout


def _wait(condition: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("site")
    _orchestra(data_dir, "admin", "migrate")
    for user, role in (("admin", "administrator"), ("viewer", "viewer")):
        _orchestra(
            data_dir,
            "admin",
            "create-user",
            user,
            "--role",
            role,
            "--password-stdin",
            stdin=PASSWORD,
        )
    token = _orchestra(data_dir, "admin", "create-token", "admin").strip().splitlines()[-1]
    log_path = data_dir / "server.log"
    env = {**os.environ, "ORCHESTRA_HEARTBEAT": "1", "ORCHESTRA_ABORT_GRACE": "2"}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestra",
                "server",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        url = str(
            _wait(
                lambda: (m := LISTENING.search(log_path.read_text())) and m.group(1),
                30,
                "the server",
            )
        )
        _wait(lambda: httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200, 30, "health")
        site = Site(url, token, data_dir)
        from orchestra.cli.client import load_document

        assert site.api("POST", "/apply", json=load_document(EXAMPLES)).status_code == 200
        _wait(
            lambda: any(w["is_active"] for w in site.api("GET", "/workers").json()["items"]),
            30,
            "the local worker",
        )
        yield site
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


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
