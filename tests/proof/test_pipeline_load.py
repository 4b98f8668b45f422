"""Many pipeline runs triggered at once (issue 21): 1,000 of three nodes under ORCHESTRA_SOAK=1,
100 in the smoke profile, on each engine. Every pipeline run must succeed, and every node must
have exactly one run, counted in the database itself; every one of those runs must have
started its job exactly once (the proof journal) and printed its lines once, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.proof.cluster import ProofCluster, sh_job
from tests.proof.conftest import choose
from tests.proof.invariants import Expect, Ledger
from tests.support.pipeline_load import tally, trigger_pipelines, wait_none_running

pytestmark = pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)

COUNT = choose(100, 1000)
NODES = ["a", "b", "c"]
LINES = 3


def test_many_pipeline_runs_at_once_run_every_node_exactly_once(
    cluster: ProofCluster, ledger: Ledger, figure: Callable[..., None]
) -> None:
    cluster.start()
    for name in ("w1", "w2"):
        cluster.start_agent(name, executors=3)
    api = cluster.api
    api.put_job("j", [sh_job(ledger.journal, LINES)])
    chain = [
        {"identifier": n, "job": "j", **({"needs": [NODES[i - 1]]} if i else {})}
        for i, n in enumerate(NODES)
    ]
    api.request("POST", "/projects/p/pipelines", 201, json={"identifier": "three", "nodes": chain})

    started = time.perf_counter()
    path = "/projects/p/pipelines/three/trigger"
    identifiers, _ = asyncio.run(trigger_pipelines(cluster.url, cluster.admin_token, path, COUNT))
    assert len(set(identifiers)) == COUNT
    wait_none_running(api, choose(300, 1200))
    seconds = time.perf_counter() - started

    counted = tally(cluster.database_url, identifiers)
    assert counted.missing == []
    assert dict(counted.statuses) == {"succeeded": COUNT}
    assert dict(counted.node_statuses) == {"succeeded": COUNT * len(NODES)}
    assert counted.twice == [], f"nodes with more than one run: {counted.twice[:10]}"
    assert counted.without_run == [], f"nodes with no run: {counted.without_run[:10]}"
    assert counted.runs == COUNT * len(NODES)

    expect = Expect(lines=LINES, statuses=frozenset({"succeeded"}))
    for run in api.runs():
        assert run["pipeline_run"] in set(identifiers) and run["pipeline_node"] in NODES, run
        ledger.add(run, expect)
    report = ledger.verify(api, deadline=60, log_sample=choose(60, 300))
    assert len(report.runs) == COUNT * len(NODES)
    figure("pipeline_runs", COUNT)
    figure("pipeline_runs_per_second", COUNT / seconds, "/s")
