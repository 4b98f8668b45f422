"""The API's docs page in Chromium (issue 24, item 7): with every request to another origin
refused, Swagger UI (installed with Orchestra, served by the app) renders the operations, and
its Authorize button with a token lets a reader try an operation."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Site


def test_docs_page_renders_offline_and_authorizes_with_a_token(page: Page, site: Site) -> None:
    local = urlsplit(site.url).netloc
    elsewhere: list[str] = []

    def refuse_other_origins(route: Route) -> None:
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", refuse_other_origins)
    page.goto(f"{site.url}/api/v1/docs")
    title = page.locator(".swagger-ui .info .title")
    expect(title).to_contain_text("Orchestra", timeout=30_000)  # a large script, a busy host
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 60
    assert elsewhere == []
    expect(page.locator(".opblock-summary-path[data-path='/api/v1/me']").first).to_be_visible()

    # Authorize with the bearer token, then try GET /api/v1/me.
    page.click(".auth-wrapper .authorize")
    dialog = page.locator(".modal-ux")
    dialog.locator("input[type=text]").first.fill(site.client.token)
    dialog.locator("button.authorize").first.click()
    dialog.locator("button.btn-done").first.click()
    me = page.locator(".opblock-get:has(.opblock-summary-path[data-path='/api/v1/me'])").first
    me.locator(".opblock-summary").click()
    me.locator("button.try-out__btn").click()
    me.locator("button.execute").click()
    status = me.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_contain_text("200")
    expect(me.locator(".live-responses-table .microlight").first).to_contain_text('"admin"')
    assert elsewhere == []
