"""The website in a real browser: log in, trigger from the form, the live log, abort, roles,
escaping and CSRF."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Site, login, screenshot


def test_login_refuses_a_wrong_password_then_logs_in(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/projects")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fprojects"))
    page.fill("#user", "admin")
    page.fill("#password", "wrong password")
    page.click("button.primary")
    expect(page.locator(".flash.bad")).to_contain_text("wrong user or password")
    screenshot(page, "login")
    page.fill("#password", PASSWORD)
    page.click("button.primary")
    expect(page).to_have_url(f"{site.url}/projects")
    cookie = next(c for c in page.context.cookies() if c["name"] == "orchestra_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_trigger_from_form_and_follow_the_live_log_to_its_last_line(page: Page, site: Site) -> None:
    login(page, site)
    page.goto(f"{site.url}/projects/example/jobs/hello")
    expect(page.locator("#parameter-name")).to_have_value("world")  # the default, filled in
    page.fill("#parameter-name", "browser; $(touch /tmp/x)")
    page.click("#trigger-form button")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    # Each line's text (web/site/logview.py: beside its number and its hidden time).
    expect(page.locator("#log-0 .lx")).to_have_text(["Hello browser; $(touch /tmp/x)"])
    screenshot(page, "run")

    script = (
        "import time\nfor i in range(1, 31):\n print('line %d' % i, flush=True); time.sleep(0.1)"
    )
    job = {"steps": [{"name": "count", "command": ["python3", "-c", script]}]}
    response = site.api("PUT", "/projects/example/jobs/lines", json=job)
    assert response.status_code in (200, 201), response.text
    page.goto(f"{site.url}/projects/example/jobs/lines")
    page.click("#trigger-form button")
    expect(page.locator("#log-0")).to_contain_text("line 3")  # arrives while running
    expect(page.locator("#log-0")).to_contain_text("line 30", timeout=20_000)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    texts = page.locator("#log-0 .lx").all_inner_texts()
    assert texts[:30] == [f"line {i}" for i in range(1, 31)]


def test_abort_a_running_run(page: Page, site: Site) -> None:
    login(page, site)
    page.goto(f"{site.url}/projects/example/jobs/long")
    page.click("#trigger-form button")
    expect(page.locator("#log-0")).to_contain_text("tick 2")
    screenshot(page, "run-live")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#abort-button")
    expect(page.locator(".flash.ok")).to_contain_text("Abort requested")
    expect(page.locator("#run-status")).to_have_text("aborted", timeout=20_000)


def test_main_pages_render_and_are_captured(page: Page, site: Site) -> None:
    login(page, site)
    for path, name in (
        ("/", "home"),
        ("/projects/example", "project"),
        ("/projects/example/jobs/build", "job"),
        ("/projects/example/schedules/nightly", "schedule"),
        ("/projects/example/runs", "runs"),
        ("/workers", "workers"),
        ("/users", "users"),
        ("/audit", "audit"),
        ("/profile", "profile"),
    ):
        response = page.goto(f"{site.url}{path}")
        assert response is not None and response.status == 200, path
        screenshot(page, name)
    page.emulate_media(color_scheme="dark")
    page.goto(f"{site.url}/projects/example")
    screenshot(page, "project-dark")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{site.url}/")
    screenshot(page, "home-phone")
    width = page.evaluate("document.documentElement.scrollWidth")  # no sideways scrolling
    assert width <= 390


def test_viewer_sees_no_admin_pages_nor_buttons(page: Page, site: Site) -> None:
    login(page, site, "viewer")
    expect(page.locator("header nav")).not_to_contain_text("Users")
    expect(page.locator("header nav")).not_to_contain_text("Audit")
    for admin_page in ("/users", "/audit"):
        response = page.goto(f"{site.url}{admin_page}")
        assert response is not None and response.status == 403, admin_page
    page.goto(f"{site.url}/projects/example/jobs/hello")
    expect(page.locator("#trigger-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Disable job")).to_have_count(0)
    response = page.request.post(
        f"{site.url}/projects/example/jobs/hello/trigger", form={"csrf_token": "x"}
    )
    assert response.status == 403


def test_script_in_a_description_renders_as_text(page: Page, site: Site) -> None:
    attack = "<script>window.pwned = 1</script><img src=x onerror=alert(1)>"
    site.api(
        "PUT",
        "/projects/example/jobs/xss",
        json={
            "description": attack,
            "display_name": attack,
            "steps": [{"name": attack, "command": ["true"]}],
        },
    )
    login(page, site)
    page.goto(f"{site.url}/projects/example/jobs/xss")
    expect(page.locator(".description")).to_have_text(attack)
    assert page.evaluate("window.pwned") is None
    assert page.locator("img[src=x]").count() == 0


def test_job_page_shows_the_jobs_controls(page: Page, site: Site) -> None:
    job = {
        "steps": [{"name": "build", "command": ["true"], "timeout": 120}],
        "timeout": 1800,
        "retry": {"count": 2, "delay": 30, "on": ["exception", "failed"]},
        "concurrency": 2,
        "priority": 10,
        "expiry": 3600,
        "retention": {"days": 30, "runs": 200},
    }
    response = site.api("PUT", "/projects/example/jobs/controlled", json=job)
    assert response.status_code in (200, 201), response.text
    login(page, site)
    page.goto(f"{site.url}/projects/example/jobs/controlled")
    expect(page.locator("#job-timeout")).to_have_text("1800 s")
    expect(page.locator("#job-retry")).to_have_text(
        "2 times on exception, failed, after 30 s (doubling)"
    )
    expect(page.locator("#job-concurrency")).to_have_text("at most 2 running")
    expect(page.locator("#job-priority")).to_have_text("10")
    expect(page.locator("#job-expiry")).to_have_text("cancelled if pending after 3600 s")
    expect(page.locator("#job-retention")).to_have_text(
        "30 days after the end, the newest 200 runs"
    )
    expect(page.locator(".steps-def li")).to_contain_text("(timeout 120 s)")
    page.goto(f"{site.url}/projects/example/jobs/hello")  # a job with none: no such rows
    expect(page.locator(".steps-def li").first).to_be_visible()
    assert page.locator("#job-timeout, #job-retry, #job-retention").count() == 0


def test_csrf_check_refuses_a_forged_form_post(page: Page, site: Site) -> None:
    login(page, site)
    forged = page.request.post(
        f"{site.url}/projects/example/jobs/hello/trigger",
        form={"parameter.name": "forged", "csrf_token": "not-the-token"},
        max_redirects=0,
    )
    assert forged.status == 403
    missing = page.request.post(
        f"{site.url}/projects/example/jobs/hello/trigger",
        form={"parameter.name": "forged"},
        max_redirects=0,
    )
    assert missing.status == 403
    runs = site.api("GET", "/projects/example/runs", params={"job": "hello"}).json()["items"]
    assert all(r["parameters"].get("name") != "forged" for r in runs)


def test_api_ignores_the_session_cookie(page: Page, site: Site) -> None:
    login(page, site)
    cookie = next(c for c in page.context.cookies() if c["name"] == "orchestra_session")
    response = httpx.get(
        f"{site.url}/api/v1/projects", cookies={"orchestra_session": cookie["value"]}
    )
    assert response.status_code == 401
