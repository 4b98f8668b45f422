"""A run's log on the website, in Chromium (issue 24, item 5): colours drawn from the terminal's
escape sequences with the log's own markup shown as text, lines arriving live numbered after the
previous step's, a line number that links to and highlights its line, times on request, and a
search that shows only the lines found."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Site, login

# `{` and `}` are doubled: a command is a template (docs/reference.md).
LIVE = (
    "import time\n"
    "for i in range(1, 13):\n"
    "    print('\\x1b[32mline %d\\x1b[0m <b>bold?</b>' % i, flush=True)\n"
    "    time.sleep(0.15)\n"
)


def test_log_colours_live_lines_links_times_and_search(browser: Browser, site: Site) -> None:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kolkata"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _check_log_page(page, site)
    finally:
        context.close()


def _check_log_page(page: Page, site: Site) -> None:
    job = {
        "steps": [
            {"name": "count", "command": ["python3", "-c", LIVE]},
            {"name": "after", "command": ["python3", "-c", "print('\\x1b[1;31mFAILED\\x1b[0m x')"]},
        ]
    }
    response = site.api("PUT", "/projects/example/jobs/colours", json=job)
    assert response.status_code in (200, 201), response.text
    login(page, site)
    page.goto(f"{site.url}/projects/example/jobs/colours")
    page.click("#trigger-form button")
    # Lines come while the step runs, coloured, the log's markup as text (no <b> element).
    expect(page.locator("#log-0 .lx").first).to_have_text("line 1 <b>bold?</b>")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("#log-0 .ll")).to_have_count(12)
    assert page.locator("#log-0 b").count() == 0
    green = page.locator("#L3 .a-fg-green")
    expect(green).to_have_text("line 3")
    assert green.evaluate("e => getComputedStyle(e).color") == "rgb(126, 231, 135)"
    # The second step's line is numbered after the first step's twelve.
    expect(page.locator("#log-1 #L13 .a-bold.a-fg-red")).to_have_text("FAILED")

    # A line number links to its line, which is highlighted.
    page.click("#L5 a.ln")
    assert page.url.endswith("#L5")
    assert page.evaluate("document.querySelector(':target').id") == "L5"
    highlight = page.locator("#L5").evaluate("e => getComputedStyle(e).backgroundColor")
    plain = page.locator("#L6").evaluate("e => getComputedStyle(e).backgroundColor")
    assert highlight != plain
    # Loaded with the anchor, the page shows that line highlighted too.
    page.goto(page.url.split("#")[0] + "#L7")
    assert page.evaluate("document.querySelector(':target').id") == "L7"

    # Times: hidden, then shown by the switch, in the viewer's time zone (the browser runs in
    # Asia/Kolkata: UTC+05:30), to the millisecond, the UTC time on hover.
    time = page.locator("#L1 .lt")
    expect(time).to_be_hidden()
    page.check("#log-times")
    expect(time).to_be_visible()
    utc = datetime.fromisoformat(str(time.get_attribute("title")).replace("Z", "+00:00"))
    local = utc.astimezone(timezone(timedelta(hours=5, minutes=30)))
    expect(time).to_have_text(
        local.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}"
    )

    # Search: only the lines found, the matches marked.
    page.fill("#log-search", "LINE 1")
    page.click(".log-tools button[type=submit]")
    expect(page.locator("#log-matches")).to_contain_text("4 lines found")  # 1, 10, 11, 12
    expect(page.locator("pre.log .ll")).to_have_count(4)
    expect(page.locator("#L10 mark")).to_have_text("line 1")
    expect(page.locator("#L1 .lt")).to_be_visible()  # the times switch was kept
