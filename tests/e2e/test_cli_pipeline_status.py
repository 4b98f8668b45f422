"""`orchestra pipeline trigger --follow` exits by the pipeline run's result (CONTRACT section 6),
on both engines: 1 for a pipeline run that failed, after printing each node's status as it
changed; a trigger refused by the server exits 1 with one line on stderr."""

from __future__ import annotations

import pytest

from tests.support.cluster import Cluster
from tests.support.databases import ENGINES
from tests.support.processes import run_orchestra

BROKEN = {
    "identifier": "broken",
    "nodes": [
        {"identifier": "build", "job": "fails"},
        {"identifier": "publish", "job": "quiet", "needs": ["build"]},
        {"identifier": "report", "job": "quiet", "needs": ["build"], "when": "failure"},
    ],
}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_follow_exits_1_when_the_pipeline_run_fails(cluster: Cluster) -> None:
    cluster.start()
    api = cluster.api
    api.put_job("quiet", [["true"]])
    api.put_job("fails", [["false"]])
    api.request("POST", "/projects/p/pipelines", 201, json=BROKEN)
    cluster.start_worker("w1")
    env = cluster.client_env()

    followed = run_orchestra(["pipeline", "trigger", "p", "broken", "--follow"], env)
    assert followed.returncode == 1, followed.stderr
    assert followed.stdout == "" and "Traceback" not in followed.stderr
    lines = followed.stderr.strip().splitlines()
    for expected in ("node build failed", "node publish skipped", "node report succeeded"):
        assert any(expected in line for line in lines), followed.stderr
    identifier = lines[-1].split()[2]
    assert lines[-1] == f"pipeline run {identifier} failed"
    shown = api.request("GET", f"/projects/p/pipeline-runs/{identifier}", 200).json()
    assert shown["status"] == "failed"
    assert [n["status"] for n in shown["nodes"]] == ["failed", "skipped", "succeeded"]

    # Without --follow the trigger itself succeeded: 0, the identifier on stdout.
    triggered = run_orchestra(["pipeline", "trigger", "p", "broken"], env)
    assert triggered.returncode == 0, triggered.stderr
    assert api.request("GET", f"/projects/p/pipeline-runs/{triggered.stdout.strip()}", 200)

    refused = run_orchestra(["pipeline", "trigger", "p", "missing", "--follow"], env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("orchestra: error: ")
    assert "404" in refused.stderr and "Traceback" not in refused.stderr
