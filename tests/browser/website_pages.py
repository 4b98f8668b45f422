"""The website's main pages, for the tests that visit every one of them (accessibility, phone
width): a failed run, a succeeded run and a pipeline run waiting at its approval are made first,
so that their pages show statuses, exit codes, logs and forms."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.conftest import PASSWORD, Site


@dataclass(frozen=True)
class Visit:
    name: str
    path: str
    status: int = 200


def make_runs(site: Site) -> tuple[str, str, str]:
    """A succeeded run of `hello`, a failed run of `failing` and a pipeline run of `release`
    waiting for its approval; their identifiers."""
    client = site.client
    hello = client.trigger("hello", "example", {"name": "<b>phone</b>"})
    failing = client.trigger("failing", "example")
    client.wait_for_status(hello, "succeeded", 60, "example")
    client.wait_for_status(failing, "failed", 60, "example")
    pipeline = client.request(
        "POST", "/projects/example/pipelines/release/trigger", 201, json={"parameters": {}}
    ).json()
    return hello["identifier"], failing["identifier"], pipeline["identifier"]


def main_pages(site: Site) -> list[Visit]:
    """Every main page of the website, the error page included (logged in as `admin`)."""
    hello, failing, pipeline = make_runs(site)
    return [
        Visit("home", "/"),
        Visit("projects", "/projects"),
        Visit("project", "/projects/example"),
        Visit("job", "/projects/example/jobs/hello"),
        Visit("runs", "/projects/example/runs"),
        Visit("run", f"/projects/example/runs/{hello}"),
        Visit("failed-run", f"/projects/example/runs/{failing}"),
        Visit("pipeline", "/projects/example/pipelines/release"),
        Visit("pipeline-runs", "/projects/example/pipeline-runs"),
        Visit("pipeline-run", f"/projects/example/pipeline-runs/{pipeline}"),
        Visit("schedule", "/projects/example/schedules/nightly"),
        Visit("notifications", "/projects/example/notifications"),
        Visit("workers", "/workers"),
        Visit("worker", f"/workers/{site.client.workers()[0]['identifier']}"),
        Visit("users", "/users"),
        Visit("user", "/users/viewer"),
        Visit("profile", "/profile"),
        Visit("audit", "/audit"),
        Visit("error", "/projects/no-such-project", 404),
        Visit("unknown", "/no/such/page", 404),
    ]


def logged_in(
    browser: Browser, site: Site, *, width: int = 1280, height: int = 900, **options: object
) -> tuple[BrowserContext, Page]:
    """A new browser context logged in as `admin`, whose pages may be injected scripts into
    (the site's Content-Security-Policy allows only its own)."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        bypass_csp=True,
        **options,  # type: ignore[arg-type]  # time zone, colour scheme...
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{site.url}/login")
    page.fill("#user", "admin")
    page.fill("#password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{site.url}/")
    return context, page
