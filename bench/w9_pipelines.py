"""W9, pipelines: how soon a pipeline's next node starts once its need has ended, and many
pipeline runs at once. First, one worker (one executor) on SQLite runs chains of trivial job
nodes (a -> b -> c ...), one chain after the other; then the issue's workloads on both engines
(bench/w9_fan.py): a 100-node fan-out and fan-in on four workers, and 1,000 pipeline runs of
three nodes at once, every node's runs counted in the database.

For each link, from the run of the need to the run of the node after it, on the server's own
clock: `advance_ms` is from the moment the master applied the need's end (the need's run's
`update_date`, written by the report that ended it) to the next run's `creation_date` (when it
was inserted, pending); `end_to_pending_ms` is from the need's `completion_date` (the end as its
worker reported it) to that same moment, so it also holds the report's way to the master. The
issue's target: p50 of `advance_ms` <= 5 ms (and p99 <= 50 ms in the fan).
"""

from __future__ import annotations

import itertools
from datetime import datetime

from tests.support.waiting import wait_until

from bench import w9_fan
from bench.context import Context
from bench.report import Figure, Workload, percentile, summary

TARGET_MS = 5.0
CHAIN = 6  # nodes per pipeline: CHAIN - 1 links measured each


def _ms(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000


def run(ctx: Context) -> Workload:
    count = ctx.size(40, 2)
    result = Workload("W9", "pipelines: a node's need ended to its run pending; many at once")
    result.size = {"chain_runs": count, "chain_nodes": CHAIN, "chain_workers": 1}
    nodes = [
        {"identifier": f"n{i}", "job": "trivial", **({"needs": [f"n{i - 1}"]} if i else {})}
        for i in range(CHAIN)
    ]
    advance: list[float] = []
    end_to_pending: list[float] = []
    with ctx.cluster("w9", "sqlite") as cluster:
        cluster.start_server()
        cluster.start_worker("w1", executors=1)
        api = cluster.api
        api.put_project("p")
        api.put_job("trivial", [["true"]])
        api.request("POST", "/projects/p/pipelines", 201, json={"identifier": "c", "nodes": nodes})
        for attempt in range(count + 1):  # the first one warms up
            started = api.request("POST", "/projects/p/pipelines/c/trigger", 201, json={})
            path = f"/projects/p/pipeline-runs/{started.json()['identifier']}"
            shown = wait_until(
                lambda path=path: (
                    (s := api.request("GET", path, 200).json())["status"] != "running" and s
                ),
                60,
                "the pipeline run to end",
                interval=0.02,
            )
            if shown["status"] != "succeeded":
                raise RuntimeError(f"pipeline run ended {shown['status']}: {shown}")
            runs = [api.get_run(node["run"]) for node in shown["nodes"]]
            if attempt == 0:
                continue
            for need, node in itertools.pairwise(runs):
                advance.append(_ms(need["update_date"], node["creation_date"]))
                end_to_pending.append(_ms(need["completion_date"], node["creation_date"]))
    for name, values, label in (
        ("advance", advance, "chain (SQLite), need's end applied to next run pending"),
        (
            "end_to_pending",
            end_to_pending,
            "chain (SQLite), need's end (worker) to next run pending",
        ),
    ):
        for q in (50, 95, 99):
            figure = Figure(f"{name}_p{q}_ms", f"{label}, p{q}", percentile(values, q), "ms")
            if name == "advance" and q == 50:
                figure.target = f"<= {TARGET_MS:g} ms"
                figure.met = figure.value is not None and figure.value <= TARGET_MS
            result.add(figure)
    result.details = {"advance_ms": summary(advance), "end_to_pending_ms": summary(end_to_pending)}
    ctx.series["W9"] = {"advance_ms": advance, "end_to_pending_ms": end_to_pending}
    w9_fan.run_into(ctx, result)
    return result
