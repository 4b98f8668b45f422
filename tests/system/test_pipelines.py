"""Pipeline runs with a real server and real workers (CONTRACT section 6): fan-out and fan-in,
the failure branch and skips, a missing result, cancel in the middle, approvals (a viewer
refused), a whole pipeline on one worker with one executor (a pipeline holds no executor)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.api import Api
from tests.support.cluster import Cluster
from tests.support.jobs import WAIT_FOR_FILE, py
from tests.support.waiting import wait_until

FINAL = frozenset({"succeeded", "failed", "cancelled"})
TOUCH = "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()"


def put_pipeline(
    api: Api, identifier: str, nodes: Iterable[Mapping[str, Any]], **fields: Any
) -> dict[str, Any]:
    body = {"identifier": identifier, "nodes": list(nodes), **fields}
    return dict(api.request("POST", "/projects/p/pipelines", 201, json=body).json())


def trigger(api: Api, pipeline: str, **parameters: str) -> dict[str, Any]:
    path = f"/projects/p/pipelines/{pipeline}/trigger"
    return dict(api.request("POST", path, 201, json={"parameters": parameters}).json())


def get(api: Api, identifier: str) -> dict[str, Any]:
    return dict(api.request("GET", f"/projects/p/pipeline-runs/{identifier}", 200).json())


def wait_final(api: Api, identifier: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_until(
        lambda: (shown := get(api, identifier))["status"] in FINAL and shown,
        timeout,
        f"pipeline run {identifier} to end",
    )


def node_of(shown: Mapping[str, Any], name: str) -> dict[str, Any]:
    (node,) = [n for n in shown["nodes"] if n["identifier"] == name]
    return dict(node)


def statuses(shown: Mapping[str, Any]) -> dict[str, str]:
    return {n["identifier"]: n["status"] for n in shown["nodes"]}


def test_fan_out_and_fan_in_on_one_worker_with_one_executor(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1", executors=1)
    api = cluster.api
    api.put_job(
        "echo",
        [py("import sys; print('node', sys.argv[1])", "{parameters[name]}")],
        parameters=[{"key": "name"}],
    )
    put_pipeline(
        api,
        "diamond",
        [
            {"identifier": "a", "job": "echo", "parameters": {"name": "{parameters[who]}"}},
            {"identifier": "b", "job": "echo", "needs": ["a"], "parameters": {"name": "b"}},
            {"identifier": "c", "job": "echo", "needs": ["a"], "parameters": {"name": "c"}},
            {"identifier": "d", "job": "echo", "needs": ["b", "c"], "parameters": {"name": "d"}},
        ],
        parameters=[{"key": "who", "default": "first"}],
    )
    started = trigger(api, "diamond", who="alpha")
    assert started["status"] == "running" and started["pipeline"] == "diamond"
    assert started["parameters"] == {"who": "alpha"}
    assert node_of(started, "a")["status"] == "pending" and node_of(started, "a")["run"]
    assert node_of(started, "d")["status"] == "pending" and node_of(started, "d")["run"] is None

    shown = wait_final(api, started["identifier"])
    assert shown["status"] == "succeeded", shown
    assert set(statuses(shown).values()) == {"succeeded"}
    assert shown["completion_date"] is not None

    runs = {r["pipeline_node"]: r for r in api.runs() if r["pipeline_run"]}
    assert Counter(r["pipeline_node"] for r in api.runs()) == {"a": 1, "b": 1, "c": 1, "d": 1}
    for name, run in runs.items():
        assert run["identifier"] == node_of(shown, name)["run"]
        assert run["pipeline_run"] == shown["identifier"]
        assert run["source"] == {
            "type": "pipeline",
            "pipeline_run": shown["identifier"],
            "node": name,
            "pipeline": "diamond",
        }
        assert run["worker"] == "w1"
    assert b"node alpha" in api.log(runs["a"])
    # Fan-in: d started after both of its needs had ended.
    assert runs["d"]["start_date"] >= max(runs[n]["completion_date"] for n in ("b", "c"))
    listed = api.request("GET", "/projects/p/pipeline-runs", 200, params={"pipeline": "diamond"})
    assert [p["identifier"] for p in listed.json()["items"]] == [shown["identifier"]]


def test_failure_branch_skips_and_a_missing_result(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    api = cluster.api
    api.put_job("fail", [py("raise SystemExit(3)")])
    api.put_job("ok", [py("print('ok')")], parameters=[{"key": "value", "default": "-"}])
    put_pipeline(
        api,
        "branches",
        [
            {"identifier": "build", "job": "fail"},
            {"identifier": "test", "job": "ok", "needs": ["build"]},
            {"identifier": "after-test", "job": "ok", "needs": ["test"]},
            {"identifier": "report", "job": "ok", "needs": ["build"], "when": "failure"},
            {"identifier": "cleanup", "job": "ok", "needs": ["after-test"], "when": "always"},
        ],
    )
    shown = wait_final(api, trigger(api, "branches")["identifier"])
    assert statuses(shown) == {
        "build": "failed",
        "test": "skipped",
        "after-test": "skipped",
        "report": "succeeded",
        "cleanup": "succeeded",
    }
    assert shown["status"] == "failed"
    assert node_of(shown, "test")["run"] is None

    put_pipeline(
        api,
        "missing",
        [
            {"identifier": "first", "job": "ok"},
            {
                "identifier": "second",
                "job": "ok",
                "needs": ["first"],
                "parameters": {"value": "{results[first][package]}"},
            },
            {"identifier": "notify", "job": "ok", "needs": ["second"], "when": "failure"},
        ],
    )
    shown = wait_final(api, trigger(api, "missing")["identifier"])
    second = node_of(shown, "second")
    assert second["status"] == "exception" and second["run"] is None
    assert "package" in second["reason"] and "first" in second["reason"]
    assert statuses(shown)["notify"] == "succeeded"
    assert shown["status"] == "failed"
    assert Counter(r["pipeline_node"] for r in api.runs() if r["job"] == "ok") == {
        "report": 1,
        "cleanup": 1,
        "first": 1,
        "notify": 1,
    }


def test_cancel_in_the_middle(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w1")
    api = cluster.api
    api.put_job("wait", [py(WAIT_FOR_FILE, str(tmp_path / "never"))])
    ran = tmp_path / "ran"
    api.put_job("touch", [py(TOUCH, str(ran))])
    put_pipeline(
        api,
        "long",
        [
            {"identifier": "one", "job": "wait"},
            {"identifier": "two", "job": "wait"},  # one of them pending: one executor
            {"identifier": "gate", "approval": {"description": "go?"}},
            {"identifier": "later", "job": "touch", "needs": ["one", "two", "gate"]},
        ],
    )
    started = trigger(api, "long")
    identifier = started["identifier"]
    wait_until(lambda: "running" in statuses(get(api, identifier)).values(), 30, "a node running")
    shown = get(api, identifier)
    assert statuses(shown)["gate"] == "waiting"
    running = "one" if statuses(shown)["one"] == "running" else "two"
    queued = "two" if running == "one" else "one"
    assert statuses(shown)[queued] == "pending"

    cancelled = api.request("POST", f"/projects/p/pipeline-runs/{identifier}/cancel", 200).json()
    assert cancelled["status"] == "cancelled"
    assert statuses(cancelled)["gate"] == "skipped"
    assert statuses(cancelled)["later"] == "skipped"
    assert statuses(cancelled)[queued] == "cancelled"
    assert api.get_run(node_of(cancelled, queued)["run"])["status"] == "cancelled"
    assert api.wait_for_status(node_of(cancelled, running)["run"], "aborted")
    wait_until(lambda: statuses(get(api, identifier))[running] == "aborted", 30, "the node aborted")
    final = get(api, identifier)
    assert final["status"] == "cancelled"
    assert statuses(final) == {
        running: "aborted",
        queued: "cancelled",
        "gate": "skipped",
        "later": "skipped",
    }
    assert api.request("POST", f"/projects/p/pipeline-runs/{identifier}/cancel").status_code == 409
    assert not ran.exists()


def test_approve_and_reject_a_viewer_refused(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    api = cluster.api
    api.request("POST", "/users", 201, json={"identifier": "vera", "roles": ["viewer"]})
    secret = api.request("POST", "/users/vera/tokens", 201, json={}).json()["secret"]
    api.put_job("ok", [py("print('ok')")])
    put_pipeline(
        api,
        "gated",
        [
            {"identifier": "build", "job": "ok"},
            {"identifier": "gate", "approval": {"description": "Publish it?"}, "needs": ["build"]},
            {"identifier": "publish", "job": "ok", "needs": ["gate"]},
        ],
    )
    first = trigger(api, "gated")["identifier"]
    wait_until(lambda: statuses(get(api, first))["gate"] == "waiting", 30, "the approval waiting")
    approve = f"/projects/p/pipeline-runs/{first}/nodes/gate/approve"
    viewer = cluster.client(token=secret)
    try:
        assert viewer.request("GET", f"/projects/p/pipeline-runs/{first}").status_code == 200
        assert viewer.request("POST", approve, json={}).status_code == 403
    finally:
        viewer.close()
    assert (
        api.request("POST", f"/projects/p/pipeline-runs/{first}/nodes/build/approve").status_code
        == 409
    )
    assert (
        api.request("POST", f"/projects/p/pipeline-runs/{first}/nodes/nope/approve").status_code
        == 404
    )

    approved = api.request("POST", approve, 200, json={"comment": "looks good"}).json()
    gate = node_of(approved, "gate")
    assert (gate["status"], gate["decided_by"], gate["comment"]) == (
        "succeeded",
        "admin",
        "looks good",
    )
    assert api.request("POST", approve, json={}).status_code == 409
    shown = wait_final(api, first)
    assert shown["status"] == "succeeded" and statuses(shown)["publish"] == "succeeded"

    second = trigger(api, "gated")["identifier"]
    wait_until(lambda: statuses(get(api, second))["gate"] == "waiting", 30, "the approval waiting")
    rejected = api.request(
        "POST", f"/projects/p/pipeline-runs/{second}/nodes/gate/reject", 200
    ).json()
    assert statuses(rejected)["gate"] == "failed" and statuses(rejected)["publish"] == "skipped"
    assert rejected["status"] == "failed"

    events = api.request("GET", "/audit").json()["items"]
    routes = [(e["actor"], e["path"]) for e in events]
    assert ("admin", f"/api/v1/projects/p/pipeline-runs/{first}/nodes/gate/approve") in routes
    assert ("admin", f"/api/v1/projects/p/pipeline-runs/{second}/nodes/gate/reject") in routes


def test_a_disabled_pipeline_and_bad_parameters_are_refused(cluster: Cluster) -> None:
    cluster.start()
    api = cluster.api
    api.put_job("ok", [py("print('ok')")])
    put_pipeline(api, "off", [{"identifier": "a", "job": "ok"}], is_enabled=False)
    refused = api.request("POST", "/projects/p/pipelines/off/trigger", json={})
    assert refused.status_code == 409 and "disabled" in refused.json()["detail"]
    put_pipeline(api, "on", [{"identifier": "a", "job": "ok"}])
    bad = api.request("POST", "/projects/p/pipelines/on/trigger", json={"parameters": {"x": "1"}})
    assert bad.status_code == 422 and "undeclared" in bad.json()["detail"]
    assert api.request("POST", "/projects/p/pipelines/none/trigger", json={}).status_code == 404
    assert api.request("GET", "/projects/p/pipeline-runs/not-a-uuid").status_code == 404
    wrong = api.request("GET", "/projects/p/pipeline-runs", params={"status": "bogus"})
    assert wrong.status_code == 422
    assert api.request("GET", "/projects/p/pipeline-runs").json()["items"] == []


def test_the_website_shows_a_pipeline_run_and_takes_decisions(cluster: Cluster) -> None:
    cluster.start()
    api = cluster.api
    api.put_job("ok", [py("print('ok')")])
    put_pipeline(
        api,
        "site",
        [
            {"identifier": "gate", "approval": {"description": "<b>Ship</b> it?"}},
            {"identifier": "ship", "job": "ok", "needs": ["gate"]},
        ],
    )
    with httpx.Client(
        base_url=cluster.url, cookies={"orchestra_session": cluster.admin_token}, timeout=10
    ) as browser:
        form = browser.get("/projects/p/pipelines/site")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        triggered = browser.post(
            "/projects/p/pipelines/site/trigger", data={"csrf_token": token.group(1)}
        )
        assert triggered.status_code == 303, triggered.text
        page_path = triggered.headers["location"].split("?")[0]
        identifier = page_path.rsplit("/", 1)[1]
        page = browser.get(page_path)
        assert page.status_code == 200
        assert "&lt;b&gt;Ship&lt;/b&gt; it?" in page.text and "<b>Ship</b>" not in page.text
        assert 'class="pipeline-graph"' in page.text and "status-waiting" in page.text
        assert f"/pipeline-runs/{identifier}/nodes/gate/approve" in page.text
        live = browser.get(f"{page_path}/live")
        assert live.status_code == 200 and "Reject" in live.text
        # Without the CSRF token: refused, nothing decided.
        forged = browser.post(f"{page_path}/nodes/gate/reject", data={"comment": "x"})
        assert forged.status_code in (303, 403)
        assert statuses(get(api, identifier))["gate"] == "waiting"
        decided = browser.post(
            f"{page_path}/nodes/gate/reject",
            data={"csrf_token": token.group(1), "comment": "not today"},
        )
        assert decided.status_code == 303, decided.text
        shown = get(api, identifier)
        assert statuses(shown) == {"gate": "failed", "ship": "skipped"}
        assert node_of(shown, "gate")["comment"] == "not today"
        listed = browser.get("/projects/p/pipeline-runs")
        assert listed.status_code == 200 and identifier[:8] in listed.text


def test_results_flow_to_the_next_node_and_a_retried_node_follows_its_attempts(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    cluster.start_worker("w1")
    api = cluster.api
    write = "import os; open(os.environ['ORCHESTRA_RESULTS'], 'a').write('package=p-1.0.tgz\\n')"
    api.put_job("build", [py(write)])
    api.put_job(
        "use",
        [py("import sys; print('got', sys.argv[1])", "{parameters[package]}")],
        parameters=[{"key": "package"}],
    )
    marker = tmp_path / "failed-once"
    # Fails on its first attempt, succeeds on the retry.
    flaky = """
        import pathlib, sys
        marker = pathlib.Path(sys.argv[1])
        first = not marker.exists()
        marker.touch()
        sys.exit(1 if first else 0)
    """
    api.put_job("flaky", [py(flaky, str(marker))], retry={"count": 1, "delay": 0, "on": ["failed"]})
    put_pipeline(
        api,
        "results",
        [
            {"identifier": "build", "job": "build"},
            {
                "identifier": "use",
                "job": "use",
                "needs": ["build"],
                "parameters": {"package": "{results[build][package]}"},
            },
            {"identifier": "flaky", "job": "flaky", "needs": ["use"]},
        ],
    )
    shown = wait_final(api, trigger(api, "results")["identifier"])
    assert shown["status"] == "succeeded", shown
    use = api.get_run(node_of(shown, "use")["run"])
    assert use["parameters"] == {"package": "p-1.0.tgz"}
    assert b"got p-1.0.tgz" in api.log(use)
    flaky_run = api.get_run(node_of(shown, "flaky")["run"])
    assert flaky_run["attempt"] == 2 and flaky_run["retry_of"] is not None
    assert flaky_run["pipeline_node"] == "flaky" and flaky_run["status"] == "succeeded"
    assert api.get_run(flaky_run["retry_of"])["status"] == "failed"
