"""axe-core (from the npm registry: tests/support/axe, `make axe-core`) on every page of the
website, in the light and the dark theme, logged out (the login page) and in: no violation of
the WCAG 2.1 A and AA rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import Site
from tests.browser.website_pages import Visit, logged_in, main_pages

AXE = Path(__file__).parent.parent / "support" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of the WCAG 2.1 A and AA rules on the page as it is now."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: `make axe-core` installs it (tests/support/axe)")
    page.add_script_tag(path=str(AXE))
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    result = page.evaluate("options => axe.run(document, options)", options)
    return list(result["violations"])


def described(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:5]:
            lines.append(f"    {node['target']}: {node['failureSummary']}".replace("\n", " "))
    return "\n".join(lines)


def check(page: Page, site: Site, visits: list[Visit]) -> dict[str, str]:
    """The pages that have violations, with them described."""
    failures: dict[str, str] = {}
    for visit in visits:
        response = page.goto(f"{site.url}{visit.path}")
        assert response is not None and response.status == visit.status, visit
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        if violations:
            failures[visit.name] = described(violations)
    return failures


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_no_wcag_violation_on_any_page(browser: Browser, site: Site, color_scheme: str) -> None:
    anonymous = browser.new_context(bypass_csp=True, color_scheme=color_scheme)  # type: ignore[arg-type]
    try:
        login_page = anonymous.new_page()
        failures = check(login_page, site, [Visit("login", "/login")])
    finally:
        anonymous.close()
    context, page = logged_in(browser, site, color_scheme=color_scheme)
    try:
        failures |= check(page, site, main_pages(site))
    finally:
        context.close()
    assert not failures, "\n".join(f"{name}:\n{text}" for name, text in failures.items())


def test_the_error_pages_have_a_title_and_a_language(browser: Browser, site: Site) -> None:
    context, page = logged_in(browser, site)
    try:
        for path in ("/projects/no-such-project", "/no/such/page"):
            response = page.goto(f"{site.url}{path}")
            assert response is not None and response.status == 404
            assert page.title().startswith("Not found")
            assert page.locator("html").get_attribute("lang") == "en"
    finally:
        context.close()
