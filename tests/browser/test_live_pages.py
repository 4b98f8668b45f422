"""The website's live pages follow the live event stream (static/live.js) in a real Chromium,
with the session cookie: the run page's state is read again when an event says the run changed
(not every half second), the workers and project pages draw themselves again on their events,
and with the stream refused the run page falls back to polling."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Request, Response, expect

from tests.browser.conftest import Site, login


@pytest.fixture
def never_runs(site: Site) -> Iterator[str]:
    """A job no worker matches: its runs stay pending until cancelled."""
    site.api(
        "PUT",
        "/projects/example/jobs/never",
        expect=(200, 201),
        json={"steps": [{"name": "s", "command": ["true"]}], "properties": {"nowhere": "x"}},
    )
    yield "never"


def _watch(page: Page) -> tuple[list[str], list[int]]:
    states: list[str] = []
    streams: list[int] = []

    def requested(request: Request) -> None:
        if request.url.endswith("/state"):
            states.append(request.url)

    def answered(response: Response) -> None:
        if "/api/v1/events" in response.url:
            streams.append(response.status)

    page.on("request", requested)
    page.on("response", answered)
    return states, streams


def test_the_run_page_updates_through_the_stream(page: Page, site: Site, never_runs: str) -> None:
    login(page, site)
    states, streams = _watch(page)
    run = site.api("POST", f"/projects/example/jobs/{never_runs}/trigger", expect=201, json={})
    identifier = run.json()["identifier"]
    page.goto(f"{site.url}/projects/example/runs/{identifier}")
    expect(page.locator("#run-status")).to_have_text("pending")
    deadline = time.monotonic() + 15
    while not streams and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert streams == [200], streams  # the stream, with the session cookie
    page.wait_for_timeout(3000)
    # Polling every half second would have read the state six times by now.
    quiet = len(states)
    assert quiet <= 3, states
    site.api("POST", f"/projects/example/runs/{identifier}/cancel", expect=200)
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=5000)


def test_the_run_page_polls_when_the_stream_is_refused(
    page: Page, site: Site, never_runs: str
) -> None:
    login(page, site)
    page.route("**/api/v1/events*", lambda route: route.abort())
    states, _ = _watch(page)
    run = site.api("POST", f"/projects/example/jobs/{never_runs}/trigger", expect=201, json={})
    identifier = run.json()["identifier"]
    page.goto(f"{site.url}/projects/example/runs/{identifier}")
    expect(page.locator("#run-status")).to_have_text("pending")
    site.api("POST", f"/projects/example/runs/{identifier}/cancel", expect=200)
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=5000)
    assert len(states) >= 2  # polled


def test_the_workers_and_project_pages_draw_again_on_their_events(page: Page, site: Site) -> None:
    login(page, site)
    (worker,) = [w["identifier"] for w in site.client.workers()][:1]
    page.goto(f"{site.url}/workers")
    page.wait_for_timeout(1000)  # the stream connects
    site.api("PATCH", f"/workers/{worker}", expect=200, json={"display_name": "renamed live"})
    expect(page.locator("main")).to_contain_text("renamed live", timeout=5000)
    site.api("PATCH", f"/workers/{worker}", expect=200, json={"display_name": worker})

    page.goto(f"{site.url}/projects/example")
    page.wait_for_timeout(1000)
    before = page.locator("main").get_attribute("data-live-updates")
    assert before is None
    site.api("POST", "/projects/example/jobs/hello/trigger", expect=201, json={})
    drawn = re.compile(r"^[1-9][0-9]*$")
    expect(page.locator("main")).to_have_attribute("data-live-updates", drawn, timeout=5000)
