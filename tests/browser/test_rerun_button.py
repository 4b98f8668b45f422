"""The Re-run button in a real browser: offered once the run is final (the page updates
itself), it makes a new run of the job with the same parameters and goes to it."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Site, login


def test_rerun_appears_when_the_run_ends_and_runs_it_again(page: Page, site: Site) -> None:
    login(page, site)
    page.goto(f"{site.url}/projects/example/jobs/hello")
    page.fill("#parameter-name", "again")
    page.click("#trigger-form button")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    first = page.url
    expect(page.locator("#rerun-button")).to_be_visible()  # shown once final, without reload
    page.click("#rerun-button")
    expect(page.locator(".flash.ok")).to_contain_text("Run triggered again")
    assert page.url.split("?")[0] != first.split("?")[0]
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#log-0 .lx")).to_have_text(["Hello again"])
