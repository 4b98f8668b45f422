"""The page of a running pipeline in a real browser: its graph drawn (a box for each node, an
arrow for each need), each node coloured by its status and recoloured live as runs end (no
reload), the node runs linked, Approve and Reject for an operator (acting: the node moves on)
and absent for a viewer (whose forged decision is refused), and the pipeline runs list.

The job nodes wait for files the test creates, so the test decides when each run ends."""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Site, login, screenshot
from tests.support.jobs import WAIT_FOR_FILE, py
from tests.support.waiting import wait_until

PROJECT = "example"
# Outside /tmp and outside the checkout (which may itself lie under /tmp, as a fresh clone's
# does): the local workers' sandboxed steps see a /tmp of their own, the rest read-only.
GATES = Path.home() / ".cache" / "orchestra-test-gates"
# build -> (test-a, test-b) -> approve -> publish: five boxes, five arrows.
EDGES = {
    ("build", "test-a"),
    ("build", "test-b"),
    ("test-a", "approve"),
    ("test-b", "approve"),
    ("approve", "publish"),
}
LIVE_TIMEOUT = 20_000  # ms: the page polls every 1.5 s; a run ends within a few seconds


@pytest.fixture(scope="module")
def gates(site: Site) -> Iterator[Path]:
    """The directory of the files the job nodes wait for (GATES: seen by sandboxed steps too);
    the jobs and pipelines, and an operator, created once."""
    directory = GATES / uuid.uuid4().hex
    directory.mkdir(parents=True)
    try:
        create(site, directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def create(site: Site, directory: Path) -> None:
    wait_command = py(WAIT_FOR_FILE, "{parameters[file]}")[1:]
    hold = {
        "parameters": [{"key": "file"}],
        # The interpreter by its real path: a checkout's virtual environment may lie under
        # /tmp, which a sandboxed step does not see.
        "steps": [{"name": "wait", "command": [os.path.realpath(sys.executable), *wait_command]}],
    }
    for job, body in (("hold", hold), ("quick", {"steps": [{"name": "go", "command": ["true"]}]})):
        response = site.api("PUT", f"/projects/{PROJECT}/jobs/{job}", json=body)
        assert response.status_code in (200, 201), response.text

    def waits_for(name: str) -> dict[str, Any]:
        return {"job": "hold", "parameters": {"file": str(directory / "{parameters[run]}" / name)}}

    release = {
        "identifier": "page-release",
        "parameters": [{"key": "run"}],
        "nodes": [
            {"identifier": "build", **waits_for("build")},
            {"identifier": "test-a", "needs": ["build"], **waits_for("tests")},
            {"identifier": "test-b", "needs": ["build"], **waits_for("tests")},
            {
                "identifier": "approve",
                "approval": {"description": "Publish it?"},
                "needs": ["test-a", "test-b"],
            },
            {"identifier": "publish", "job": "quick", "needs": ["approve"]},
        ],
    }
    gate = {
        "identifier": "page-gate",
        "nodes": [
            {"identifier": "approve", "approval": {"description": "Go?"}},
            {"identifier": "publish", "job": "quick", "needs": ["approve"]},
        ],
    }
    for pipeline in (release, gate):
        response = site.api("POST", f"/projects/{PROJECT}/pipelines", json=pipeline)
        assert response.status_code == 201, response.text
    response = site.api(
        "POST",
        "/users",
        json={"identifier": "operator", "roles": ["operator"], "password": PASSWORD},
    )
    assert response.status_code in (201, 409), response.text


def trigger(site: Site, pipeline: str, **parameters: str) -> str:
    path = f"/projects/{PROJECT}/pipelines/{pipeline}/trigger"
    response = site.api("POST", path, json={"parameters": parameters})
    assert response.status_code == 201, response.text
    return str(response.json()["identifier"])


def shown(site: Site, identifier: str) -> dict[str, Any]:
    response = site.api("GET", f"/projects/{PROJECT}/pipeline-runs/{identifier}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def node(site: Site, identifier: str, name: str) -> dict[str, Any]:
    return next(n for n in shown(site, identifier)["nodes"] if n["identifier"] == name)


def box(page: Page, name: str) -> Any:
    return page.locator(f'#pipeline-graph g.pipeline-node[data-node="{name}"]')


def status_of(name: str) -> re.Pattern[str]:
    return re.compile(rf"\bstatus-{name}\b")


def stroke(page: Page, name: str) -> str:
    return str(box(page, name).locator("rect").evaluate("r => getComputedStyle(r).stroke"))


def test_running_pipeline_is_drawn_coloured_live_linked_and_approved(
    page: Page, site: Site, gates: Path
) -> None:
    identifier = trigger(site, "page-release", run="approved")
    (gates / "approved").mkdir()
    login(page, site, "operator")
    page.goto(f"{site.url}/projects/{PROJECT}/pipeline-runs/{identifier}")
    page.evaluate("window.notReloaded = true")  # gone if the page is loaded again

    # The graph: a box for each node and an arrow (with its head) for each need.
    expect(page.locator("#pipeline-graph g.pipeline-node")).to_have_count(5)
    edges = page.locator("#pipeline-graph path.pipeline-edge")
    expect(edges).to_have_count(len(EDGES))
    drawn = {
        (str(e.get_attribute("data-from")), str(e.get_attribute("data-to"))) for e in edges.all()
    }
    assert drawn == EDGES
    assert all(e.get_attribute("marker-end") == "url(#pipeline-arrow)" for e in edges.all())
    assert page.locator("#pipeline-graph marker#pipeline-arrow").count() == 1

    # Coloured by status: build runs while the rest is pending, each in its own colour.
    expect(box(page, "build")).to_have_class(status_of("running"), timeout=LIVE_TIMEOUT)
    expect(box(page, "publish")).to_have_class(status_of("pending"))
    assert stroke(page, "build") != stroke(page, "publish")
    expect(page.locator("#pipeline-run-status")).to_have_text("running")
    build_run = node(site, identifier, "build")["run"]
    link = page.locator(f"#node-build a[href='/projects/{PROJECT}/runs/{build_run}']")
    expect(link).to_have_text(build_run[:8])
    graph_link = page.locator(f"#pipeline-graph a[href='/projects/{PROJECT}/runs/{build_run}']")
    expect(graph_link.locator("g.pipeline-node")).to_have_attribute("data-node", "build")
    expect(page.locator("#pipeline-graph a")).to_have_count(1)  # only nodes with a run link
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    screenshot(page, "pipeline-run-live")

    # Updated live as runs end: build succeeds, the tests start, then wait for their file.
    (gates / "approved" / "build").touch()
    expect(box(page, "build")).to_have_class(status_of("succeeded"), timeout=LIVE_TIMEOUT)
    running = page.locator("#pipeline-graph g.pipeline-node.status-running")
    expect(running).to_have_count(1, timeout=LIVE_TIMEOUT)  # one executor: one test at a time
    assert running.get_attribute("data-node") in ("test-a", "test-b")
    assert stroke(page, "build") != stroke(page, "publish")
    (gates / "approved" / "tests").touch()
    for name in ("test-a", "test-b"):
        expect(box(page, name)).to_have_class(status_of("succeeded"), timeout=LIVE_TIMEOUT)
        run = node(site, identifier, name)["run"]
        expect(
            page.locator(f"#node-{name} a[href='/projects/{PROJECT}/runs/{run}']")
        ).to_be_visible()
    expect(box(page, "approve")).to_have_class(status_of("waiting"), timeout=LIVE_TIMEOUT)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "pipeline-run-waiting")

    # The operator approves: the approval succeeds, publish runs, the pipeline run succeeds.
    approve = page.locator("#node-approve").get_by_role("button", name="Approve")
    expect(approve).to_be_visible()
    expect(page.locator("#node-approve").get_by_role("button", name="Reject")).to_be_visible()
    page.locator("#node-approve input[name=comment]").fill("<b>ship</b> it")
    approve.click()
    expect(page.locator(".flash.ok")).to_have_text("Approved.")
    expect(page.locator("#pipeline-run-status")).to_have_text("succeeded", timeout=LIVE_TIMEOUT)
    expect(box(page, "publish")).to_have_class(status_of("succeeded"))
    expect(page.locator("#node-approve")).to_contain_text("approved by operator: <b>ship</b> it")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    approval = node(site, identifier, "approve")
    assert approval["status"] == "succeeded" and approval["decided_by"] == "operator"

    # A node's run is one click away, in the table and on the graph.
    publish = node(site, identifier, "publish")["run"]
    page.locator(f"#node-publish a[href='/projects/{PROJECT}/runs/{publish}']").click()
    expect(page).to_have_url(f"{site.url}/projects/{PROJECT}/runs/{publish}")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    page.go_back()
    test_a = node(site, identifier, "test-a")["run"]
    page.locator('#pipeline-graph g.pipeline-node[data-node="test-a"]').click()
    expect(page).to_have_url(f"{site.url}/projects/{PROJECT}/runs/{test_a}")


def test_viewer_sees_no_decision_buttons_and_is_refused_then_an_operator_rejects(
    page: Page, site: Site, gates: Path
) -> None:
    identifier = trigger(site, "page-gate")
    path = f"/projects/{PROJECT}/pipeline-runs/{identifier}"
    wait_until(lambda: node(site, identifier, "approve")["status"] == "waiting", 30, "waiting")
    login(page, site, "viewer")
    page.goto(f"{site.url}{path}")
    expect(box(page, "approve")).to_have_class(status_of("waiting"))
    expect(page.locator("#node-approve")).to_contain_text("waiting")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    expect(page.locator("#pipeline-cancel-form")).to_have_count(0)
    # With the viewer's own valid CSRF token (the logout form's): refused for the role.
    token = page.locator("header input[name=csrf_token]").first.get_attribute("value")
    assert token
    form = {"csrf_token": token, "comment": "forged"}
    for action in ("approve", "reject"):
        forged = page.request.post(
            f"{site.url}{path}/nodes/approve/{action}", form=form, max_redirects=0
        )
        assert forged.status == 403, action
    assert node(site, identifier, "approve")["status"] == "waiting"
    page.context.clear_cookies()

    login(page, site, "operator")
    page.goto(f"{site.url}{path}")
    page.locator("#node-approve").get_by_role("button", name="Reject").click()
    expect(page.locator(".flash.ok")).to_have_text("Rejected.")
    expect(page.locator("#pipeline-run-status")).to_have_text("failed")
    expect(box(page, "approve")).to_have_class(status_of("failed"))
    expect(box(page, "publish")).to_have_class(status_of("skipped"))
    expect(page.locator("#node-approve")).to_contain_text("rejected by operator")
    rejected = shown(site, identifier)
    assert rejected["status"] == "failed"
    assert [n["status"] for n in rejected["nodes"]] == ["failed", "skipped"]
    assert rejected["nodes"][1]["run"] is None


def test_pipeline_runs_list_links_each_run_and_filters(page: Page, site: Site, gates: Path) -> None:
    failed = trigger(site, "page-gate")
    wait_until(lambda: node(site, failed, "approve")["status"] == "waiting", 30, "waiting")
    response = site.api(
        "POST", f"/projects/{PROJECT}/pipeline-runs/{failed}/nodes/approve/reject", json={}
    )
    assert response.status_code == 200, response.text
    running = trigger(site, "page-gate")
    login(page, site, "viewer")
    page.goto(f"{site.url}/projects/{PROJECT}")
    page.locator("#pipeline-runs-link").click()
    expect(page).to_have_url(f"{site.url}/projects/{PROJECT}/pipeline-runs")
    rows = page.locator("#pipeline-runs tbody tr")
    expect(rows.first).to_contain_text(running[:8])  # newest first
    listed = page.locator(f"#pipeline-runs a[href='/projects/{PROJECT}/pipeline-runs/{failed}']")
    expect(listed).to_have_text(failed[:8])
    row = rows.filter(has=page.locator(f"a[href$='/pipeline-runs/{failed}']"))
    expect(row.locator("td").nth(1)).to_have_text("failed")
    expect(row.locator("td").nth(2)).to_contain_text("approve")
    screenshot(page, "pipeline-runs")
    page.select_option("#filter-status", "failed")
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator(f"#pipeline-runs a[href$='{failed}']")).to_have_count(1)
    expect(page.locator(f"#pipeline-runs a[href$='{running}']")).to_have_count(0)
    assert all(
        text == "failed"
        for text in page.locator("#pipeline-runs tbody tr td:nth-child(2)").all_inner_texts()
    )
    listed = page.locator(f"#pipeline-runs a[href$='{failed}']")
    listed.click()
    expect(page.locator("#pipeline-run-status")).to_have_text("failed")
    site.api("POST", f"/projects/{PROJECT}/pipeline-runs/{running}/cancel")
