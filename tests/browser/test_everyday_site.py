"""The website in everyday use: dates in the viewer's time zone (UTC on hover, and UTC without
scripts), lists that page both ways, commands shown with their quoting, and the charts of a
job's runs and of a project's success rate."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Site, login, screenshot
from tests.browser.website_pages import logged_in

KOLKATA = timedelta(hours=5, minutes=30)  # no summer time: the same offset all year


def utc_of(page: Page, selector: str) -> tuple[datetime, str, str]:
    """The first date there: its UTC moment, its text and its title."""
    time = page.locator(selector).first
    moment = datetime.fromisoformat(str(time.get_attribute("datetime")).replace("Z", "+00:00"))
    return moment.astimezone(UTC), time.inner_text(), str(time.get_attribute("title"))


def test_dates_are_in_the_viewers_time_zone_and_utc_on_hover(browser: Browser, site: Site) -> None:
    context, page = logged_in(browser, site, timezone_id="Asia/Kolkata")
    try:
        page.goto(f"{site.url}/projects/example/schedules/nightly")
        moment, text, title = utc_of(page, "ol time[datetime]")
        local = moment + KOLKATA
        assert text == local.strftime("%Y-%m-%d %H:%M:%S") + " GMT+5:30", text
        assert title == moment.strftime("%Y-%m-%d %H:%M:%S UTC")
        assert moment.strftime("%H:%M") == "03:00"  # "0 3 * * *" in the schedule's zone, UTC
        screenshot(page, "schedule-kolkata")
    finally:
        context.close()
    # Without scripts, the same page reads in UTC.
    context, page = logged_in(browser, site, timezone_id="Asia/Kolkata", java_script_enabled=False)
    try:
        page.goto(f"{site.url}/projects/example/schedules/nightly")
        moment, text, title = utc_of(page, "ol time[datetime]")
        assert text == title == moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    finally:
        context.close()


def test_a_run_that_starts_shows_its_start_in_local_time(browser: Browser, site: Site) -> None:
    context, page = logged_in(browser, site, timezone_id="America/Sao_Paulo")  # UTC-3 all year
    try:
        page.goto(f"{site.url}/projects/example/jobs/hello")
        page.click("#trigger-form button[type=submit]")
        expect(page.locator("#run-status")).to_have_text("succeeded")
        expect(page.locator("#run-started time")).to_have_text(re.compile(r"GMT-3$"))
        moment, text, _title = utc_of(page, "#run-started time")
        assert text == (moment - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S GMT-3")
    finally:
        context.close()


def run_links(page: Page) -> list[str]:
    """The runs the page's table links to (its Run column), in order."""
    hrefs = page.locator("table td:last-child a.mono").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    return [str(href).rsplit("/", 1)[1] for href in hrefs]


def follow(page: Page, selector: str) -> None:
    """Click a link and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def test_lists_page_both_ways_keeping_their_filter(browser: Browser, site: Site) -> None:
    # A disabled job's runs stay pending: 60 runs at once, none of them run.
    job = {"is_enabled": False, "steps": [{"name": "s", "command": ["true"]}]}
    site.api("PUT", "/projects/example/jobs/paged", json=job).raise_for_status()
    made = [site.client.trigger("paged", "example")["identifier"] for _ in range(60)]
    newest_first = list(reversed(made))
    context, page = logged_in(browser, site)
    try:
        page.goto(f"{site.url}/projects/example/jobs/paged?status=pending")  # 25 a page
        pages = [run_links(page)]
        expect(page.locator("nav.pager .previous-page")).to_have_count(0)  # the first page
        for _ in range(2):
            follow(page, "nav.pager .next-page")
            expect(page.locator("#status-filter")).to_have_value("pending")  # the filter kept
            pages.append(run_links(page))
        expect(page.locator("nav.pager .next-page")).to_have_count(0)  # the last page
        assert [len(shown) for shown in pages] == [25, 25, 10]
        assert [run for shown in pages for run in shown] == newest_first
        follow(page, "nav.pager .previous-page")
        assert run_links(page) == pages[1]
        expect(page.locator("#status-filter")).to_have_value("pending")
        screenshot(page, "job-paged")
        follow(page, "nav.pager .previous-page")
        assert run_links(page) == pages[0]
        expect(page.locator("nav.pager .previous-page")).to_have_count(0)
        follow(page, "nav.pager .next-page")
        follow(page, "nav.pager .first-page")
        assert run_links(page) == pages[0]
    finally:
        context.close()
        for run in made:
            site.client.cancel(run, "example")


def test_commands_keep_their_quoting(page: Page, site: Site) -> None:
    job = {
        "steps": [{"name": "quoted", "command": ["sh", "-c", "echo 'a b' <i>x</i>", "two words"]}]
    }
    site.api("PUT", "/projects/example/jobs/quoted", json=job).raise_for_status()
    login(page, site)
    page.goto(f"{site.url}/projects/example/jobs/quoted")
    expect(page.locator(".steps-def code.command")).to_have_text(
        "sh -c 'echo '\"'\"'a b'\"'\"' <i>x</i>' 'two words'"
    )
    assert page.locator(".steps-def i").count() == 0


def test_job_and_project_pages_draw_their_charts(browser: Browser, site: Site) -> None:
    for name in ("one", "two"):
        run = site.client.trigger("hello", "example", {"name": name})
        site.client.wait_for_status(run, "succeeded", 60, "example")
    failing = site.client.trigger("failing", "example")
    site.client.wait_for_status(failing, "failed", 60, "example")
    context, page = logged_in(browser, site)
    try:
        page.goto(f"{site.url}/projects/example/jobs/hello")
        chart = page.locator("svg#job-trend")
        expect(chart).to_have_attribute("aria-describedby", "job-trend-summary")
        assert chart.locator("rect.s-succeeded").count() >= 2
        expect(page.locator("#job-trend-summary")).to_contain_text("succeeded")
        page.goto(f"{site.url}/projects/example")
        chart = page.locator("svg#project-trend")
        assert chart.locator("rect.s-failed").count() >= 1
        summary = page.locator("#project-trend-summary")
        expect(summary).to_contain_text("Success rate by day (UTC)")
        expect(summary).to_contain_text(re.compile(r"\d+% of \d+ runs succeeded"))
        screenshot(page, "project-chart")
    finally:
        context.close()
