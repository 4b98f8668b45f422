"""Two masters advancing the same pipeline runs on PostgreSQL, one of them killed -9 in the
middle: every pipeline run ends `succeeded`, every node has exactly one run, and every run ran
once (a journal written by the runs themselves). An API-only server takes the triggers, so only
the masters advance what follows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.waiting import wait_until

pytestmark = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)

# Appends "<run> <node>" to the journal in one O_APPEND write, then takes a little while.
STEP = """
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{os.environ['ORCHESTRA_RUN']} {sys.argv[2]}\\n".encode())
    os.close(fd)
    time.sleep(0.2)
"""
FAN = ["b1", "b2", "b3"]
NODES = [
    {"identifier": "a", "job": "step", "parameters": {"node": "a"}},
    *({"identifier": b, "job": "step", "needs": ["a"], "parameters": {"node": b}} for b in FAN),
    {"identifier": "c", "job": "step", "needs": FAN, "parameters": {"node": "c"}},
    {"identifier": "d1", "job": "step", "needs": ["c"], "parameters": {"node": "d1"}},
    {"identifier": "d2", "job": "step", "needs": ["c"], "parameters": {"node": "d2"}},
    {"identifier": "e", "job": "step", "needs": ["d1", "d2"], "parameters": {"node": "e"}},
]
PIPELINE_RUNS = 6


def test_two_masters_one_killed_every_node_runs_exactly_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    settings = {"ORCHESTRA_HEARTBEAT": "1", "ORCHESTRA_LEASE": "60"}
    master1, m1 = cluster.start_role("master-1", "master", settings=settings)
    _master2, m2 = cluster.start_role("master-2", "master", settings=settings)
    _api, a1 = cluster.start_role("api-1", "api", settings=settings)
    api = cluster.use(a1)
    api.put_project("p")
    api.put_job(
        "step", [py(STEP, str(journal), "{parameters[node]}")], parameters=[{"key": "node"}]
    )
    api.request("POST", "/projects/p/pipelines", 201, json={"identifier": "g", "nodes": NODES})
    for name, urls in (("w1", [m1, m2]), ("w2", [m2, m1])):
        cluster.start_worker(name, executors=2, urls=urls)

    identifiers = [
        api.request("POST", "/projects/p/pipelines/g/trigger", 201, json={}).json()["identifier"]
        for _ in range(PIPELINE_RUNS)
    ]
    # Kill master 1 once the pipelines are under way (some fan-out nodes have run).
    wait_until(
        lambda: journal.exists() and len(journal.read_text().splitlines()) >= 2 * PIPELINE_RUNS,
        60,
        "the pipelines under way",
    )
    master1.kill()

    def all_final() -> list[dict] | None:
        shown = [
            api.request("GET", f"/projects/p/pipeline-runs/{i}", 200).json() for i in identifiers
        ]
        return shown if all(s["status"] != "running" for s in shown) else None

    shown = wait_until(all_final, 120, "every pipeline run to end", interval=0.5)
    assert [s["status"] for s in shown] == ["succeeded"] * PIPELINE_RUNS
    runs = [r for r in api.runs() if r["pipeline_run"]]
    per_node = Counter((r["pipeline_run"], r["pipeline_node"]) for r in runs)
    assert len(per_node) == PIPELINE_RUNS * len(NODES)
    assert set(per_node.values()) == {1}, [k for k, v in per_node.items() if v > 1]
    for pipeline_run in shown:
        for node in pipeline_run["nodes"]:
            assert per_node[(pipeline_run["identifier"], node["identifier"])] == 1
            assert node["status"] == "succeeded" and node["run"]
    ran = Counter(line.split()[0] for line in journal.read_text().splitlines())
    assert set(ran) == {r["identifier"] for r in runs}
    assert set(ran.values()) == {1}
