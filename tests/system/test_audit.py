"""The audit log on a real server: a change made through the API and one made through the
website's forms, each with the user who made it."""

from __future__ import annotations

import re

import httpx

from orchestra.web.site.security import LOGIN_CSRF_COOKIE
from tests.support.cluster import Cluster
from tests.support.jobs import py


def test_changes_through_the_api_and_the_website_are_audited(cluster: Cluster) -> None:
    cluster.start()
    cluster.api.put_job("j", [py("print('hi')")])
    with httpx.Client(
        base_url=cluster.url, cookies={"orchestra_session": cluster.admin_token}, timeout=10
    ) as browser:
        page = browser.get("/projects/p/jobs/j")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        disabled = browser.post(
            "/projects/p/jobs/j/state", data={"csrf_token": token.group(1), "is_enabled": "false"}
        )
        assert disabled.status_code == 303, disabled.text
        # A form that failed answers with a redirect back carrying the error: no change.
        again = browser.post(
            "/users", data={"csrf_token": token.group(1), "identifier": "admin", "roles": []}
        )
        assert again.status_code == 303 and "error=" in again.headers["location"]
        shown = browser.get("/audit")
        assert shown.status_code == 200
        assert "POST /projects/p/jobs/j/state" in shown.text
    assert cluster.api.request("GET", "/projects/p/jobs/j").json()["is_enabled"] is False

    # Nobody logged in, with the login form's own CSRF pair: refused (to the login page).
    with httpx.Client(
        base_url=cluster.url, cookies={LOGIN_CSRF_COOKIE: "x" * 43}, timeout=10
    ) as anonymous:
        refused = anonymous.post(
            "/projects/p/jobs/j/state", data={"csrf_token": "x" * 43, "is_enabled": "true"}
        )
        assert refused.status_code in (303, 403), refused.text

    events = cluster.api.request("GET", "/audit").json()["items"]
    assert [(e["actor"], e["method"], e["route"], e["path"]) for e in events] == [
        ("admin", "POST", "/projects/{project}/jobs/{job}/state", "/projects/p/jobs/j/state"),
        ("admin", "PUT", "/api/v1/projects/{project}/jobs/{job}", "/api/v1/projects/p/jobs/j"),
        ("admin", "PUT", "/api/v1/projects/{project}", "/api/v1/projects/p"),
    ]
