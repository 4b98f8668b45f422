"""The website on a phone: at 390 x 844 in Chromium, no page scrolls sideways, and the
controls that sit at the right of wide tables (a run's link in the Run column, a token's
Revoke button) or under the fold (Run, Re-run) can be reached and clicked."""

from __future__ import annotations

from playwright.sync_api import Browser, Locator, Page

from tests.browser.conftest import Site, screenshot
from tests.browser.website_pages import logged_in, main_pages

WIDTH, HEIGHT = 390, 844


def page_width(page: Page) -> int:
    return int(
        page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    )


def reachable(control: Locator) -> None:
    """The control scrolls into view (its table's frame scrolls if need be) and would take a
    click there: visible, inside the viewport, and not covered by anything."""
    control.scroll_into_view_if_needed()
    box = control.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    assert 0 <= box["x"] and box["x"] + box["width"] <= WIDTH + 0.5, box
    control.click(trial=True)


def test_no_page_is_wider_than_a_phone(browser: Browser, site: Site) -> None:
    context, page = logged_in(browser, site, width=WIDTH, height=HEIGHT)
    try:
        too_wide = {}
        for visit in main_pages(site):
            response = page.goto(f"{site.url}{visit.path}")
            assert response is not None and response.status == visit.status, visit
            page.wait_for_load_state("networkidle")
            width = page_width(page)
            if width > WIDTH:
                too_wide[visit.name] = width
            screenshot(page, f"phone-{visit.name}")
        assert not too_wide, f"pages wider than {WIDTH} px: {too_wide}"
    finally:
        context.close()


def test_run_revoke_and_rerun_are_reachable_on_a_phone(browser: Browser, site: Site) -> None:
    context, page = logged_in(browser, site, width=WIDTH, height=HEIGHT)
    try:
        page.goto(f"{site.url}/projects/example/jobs/hello")
        reachable(page.locator("#trigger-form button[type=submit]"))
        page.click("#trigger-form button[type=submit]")
        page.locator("#run-status .s-succeeded").wait_for()
        reachable(page.locator("#rerun-button"))
        for path in ("/projects/example/runs", "/projects/example/jobs/hello", "/"):
            page.goto(f"{site.url}{path}")
            run_link = page.locator("table td:last-child a.mono").first  # the Run column
            reachable(run_link)
            assert page_width(page) <= WIDTH, path
        page.goto(f"{site.url}/profile")
        page.fill("#token-description", "phone")
        page.click("form.row button[type=submit]")
        page.locator("#new-token-secret").wait_for()
        revoke = page.locator("tr", has_text="phone").get_by_role("button", name="Revoke")
        reachable(revoke)
        assert page_width(page) <= WIDTH
        page.once("dialog", lambda dialog: dialog.accept())
        revoke.click()
        page.locator(".flash.ok", has_text="Token revoked").wait_for()
    finally:
        context.close()
