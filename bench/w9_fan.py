"""W9's issue workloads, on SQLite and on PostgreSQL, four workers with two executors each:

- fan: a pipeline of 100 trivial job nodes, one (`root`) fanning out to 98 and back into one
  (`sink`), run one pipeline run after the other. For each node, on the server's own clock:
  `advance_ms` is from its last need's end as the master applied it (the latest `update_date`
  of its needs' runs, written by the report that ended them) to its run's `creation_date` (when
  it was inserted, pending); `end_to_pending_ms` from the last need's `completion_date` (the end
  as its worker reported it) to the same moment. The issue's targets: p50 <= 5 ms and p99 <=
  50 ms of `advance_ms`. The baseline is an API trigger of the same trivial job on the same
  cluster just before (p50 of `POST .../trigger`, one at a time: a pending run made on request).
- many: 1,000 pipeline runs of three nodes (a -> b -> c) triggered at once (16 requests in
  flight); the time from the first trigger to none running; every node's runs then counted in
  the database: none may have run twice, none may be left without its run. The baseline is the
  same number of runs (3,000) of the same job triggered at once on the same cluster just
  before, as plain runs: node runs/s over plain runs/s.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from tests.support.api import Api
from tests.support.pipeline_load import tally, trigger_pipelines, wait_none_running
from tests.support.waiting import wait_until

from bench.context import Context
from bench.report import Figure, Workload, percentile, ratio, summary
from bench.w2_throughput import trigger_all

WORKERS = 4
EXECUTORS = 2
FAN_WIDTH = 98  # + root + sink = 100 nodes
TARGET_P50_MS = 5.0
TARGET_P99_MS = 50.0
CHAIN = ["a", "b", "c"]


def _ms(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000


def fan_nodes(width: int = FAN_WIDTH) -> list[dict[str, Any]]:
    middle = [f"m{i:02d}" for i in range(width)]
    return [
        {"identifier": "root", "job": "trivial"},
        *({"identifier": m, "job": "trivial", "needs": ["root"]} for m in middle),
        {"identifier": "sink", "job": "trivial", "needs": middle},
    ]


def chain_nodes() -> list[dict[str, Any]]:
    return [
        {"identifier": n, "job": "trivial", **({"needs": [CHAIN[i - 1]]} if i else {})}
        for i, n in enumerate(CHAIN)
    ]


def _final(api: Api, identifier: str, timeout: float) -> dict[str, Any]:
    path = f"/projects/p/pipeline-runs/{identifier}"
    shown: dict[str, Any] = wait_until(
        lambda: (s := api.request("GET", path, 200).json())["status"] != "running" and s,
        timeout,
        "the pipeline run to end",
        interval=0.05,
    )
    if shown["status"] != "succeeded":
        raise RuntimeError(f"pipeline run ended {shown['status']}")
    return shown


def fan(ctx: Context, api: Api, runs: int) -> dict[str, Any]:
    """Samples of the fan pipeline's hand-overs, and the baseline."""
    triggers = []
    for _ in range(ctx.size(60, 5)):
        started = time.perf_counter()
        api.trigger("trivial")
        triggers.append((time.perf_counter() - started) * 1000)
    api.wait_drained(120, "the baseline's runs")
    nodes = fan_nodes(ctx.size(FAN_WIDTH, 6))
    api.request("POST", "/projects/p/pipelines", 201, json={"identifier": "fan", "nodes": nodes})
    advance: list[float] = []
    end_to_pending: list[float] = []
    sink: list[float] = []
    for attempt in range(runs + 1):  # the first one warms up
        started = api.request("POST", "/projects/p/pipelines/fan/trigger", 201, json={}).json()
        shown = _final(api, started["identifier"], ctx.size(300, 120))
        if attempt == 0:
            continue
        by_run = {
            r["identifier"]: r for r in api.runs("p") if r["pipeline_run"] == shown["identifier"]
        }
        by_node = {n["identifier"]: by_run[n["run"]] for n in shown["nodes"]}
        for node in shown["nodes"]:
            if not node["needs"]:
                continue
            needs = [by_node[n] for n in node["needs"]]
            run = by_node[node["identifier"]]
            applied = max(n["update_date"] for n in needs)
            ended = max(n["completion_date"] for n in needs)
            advance.append(_ms(applied, run["creation_date"]))
            end_to_pending.append(_ms(ended, run["creation_date"]))
            if node["identifier"] == "sink":
                sink.append(advance[-1])
    return {
        "advance": advance,
        "end_to_pending": end_to_pending,
        "sink": sink,
        "trigger_p50_ms": percentile(triggers, 50),
    }


def many(ctx: Context, cluster: Any, count: int) -> dict[str, Any]:
    """The many pipeline runs at once, the baseline of as many plain runs before."""
    api = cluster.api
    timeout = ctx.size(900, 120)
    plain = count * len(CHAIN)
    started = time.perf_counter()
    asyncio.run(trigger_all(cluster.url, cluster.admin_token, plain))
    api.wait_drained(timeout, f"{plain} plain runs to complete")
    plain_rate = plain / (time.perf_counter() - started)

    api.request(
        "POST", "/projects/p/pipelines", 201, json={"identifier": "three", "nodes": chain_nodes()}
    )
    path = "/projects/p/pipelines/three/trigger"
    started = time.perf_counter()
    identifiers, timings = asyncio.run(
        trigger_pipelines(cluster.url, cluster.admin_token, path, count)
    )
    triggered = time.perf_counter()
    wait_none_running(api, timeout)
    seconds = time.perf_counter() - started
    counted = tally(cluster.database_url, identifiers)
    return {
        "seconds": seconds,
        "trigger_seconds": triggered - started,
        "trigger_ms": summary(timings),
        "node_runs_per_second": plain / seconds,
        "plain_runs_per_second": plain_rate,
        "statuses": dict(counted.statuses),
        "node_statuses": dict(counted.node_statuses),
        "runs": counted.runs,
        "twice": len(counted.twice),
        "twice_examples": counted.twice[:5],
        "without_run": len(counted.without_run),
        "missing": len(counted.missing),
    }


def measure(ctx: Context, engine: str, fan_runs: int, count: int) -> dict[str, Any]:
    with ctx.cluster(f"w9-{engine}", engine) as cluster:
        cluster.start_server()
        identifiers = [f"w{i}" for i in range(1, ctx.size(WORKERS, 2) + 1)]
        for identifier in identifiers:
            cluster.start_worker(identifier, executors=EXECUTORS, wait=False)
        cluster.wait_for_workers(identifiers)
        cluster.api.put_project("p")
        cluster.api.put_job("trivial", [["true"]])
        return {"fan": fan(ctx, cluster.api, fan_runs), "many": many(ctx, cluster, count)}


def add_figures(result: Workload, engine: str, measured: dict[str, Any]) -> None:
    fanned = measured["fan"]
    size = result.size["fan_nodes"]
    trigger = fanned["trigger_p50_ms"]
    baseline = f"an API trigger, p50 ({trigger:.2f} ms)"
    for q, target in ((50, TARGET_P50_MS), (95, None), (99, TARGET_P99_MS)):
        value = percentile(fanned["advance"], q)
        figure = Figure(
            f"fan_{engine}_advance_p{q}_ms",
            f"{size}-node fan, last need's end to run pending, p{q}, {engine}",
            value,
            "ms",
            ratio=ratio(value, trigger),
            baseline=baseline,
        )
        if target is not None:
            figure.target = f"<= {target:g} ms"
            figure.met = value <= target
        result.add(figure)
    result.add(
        Figure(
            f"fan_{engine}_end_to_pending_p50_ms",
            f"{size}-node fan, need's end (worker) to run pending, p50, {engine}",
            percentile(fanned["end_to_pending"], 50),
            "ms",
        )
    )
    crowd = measured["many"]
    pipeline_runs = sum(crowd["statuses"].values())
    rate = crowd["node_runs_per_second"]
    throughput = Figure(
        f"many_{engine}_node_runs_per_second",
        f"{pipeline_runs} pipeline runs of 3 at once, node runs/s, {engine}",
        rate,
        "/s",
        ratio=ratio(rate, crowd["plain_runs_per_second"]),
        baseline=f"as many plain runs at once ({crowd['plain_runs_per_second']:.0f}/s)",
    )
    result.add(throughput)
    wrong = crowd["twice"] + crowd["without_run"] + crowd["missing"]
    wrong += pipeline_runs - crowd["statuses"].get("succeeded", 0)
    result.add(
        Figure(
            f"many_{engine}_nodes_wrong",
            f"nodes run twice or never, pipeline runs not succeeded, {engine}",
            float(wrong),
            "",
            target="0",
            met=wrong == 0,
        )
    )


def run_into(ctx: Context, result: Workload) -> None:
    """Measure on both engines and add the figures to W9's result."""
    fan_runs = ctx.size(5, 1)
    count = ctx.size(1000, 6)
    result.size.update(
        fan_nodes=ctx.size(FAN_WIDTH, 6) + 2,
        fan_runs=fan_runs,
        many=count,
        workers=ctx.size(WORKERS, 2),
    )
    series: dict[str, Any] = {}
    for engine in ("sqlite", "postgresql"):
        measured = measure(ctx, engine, fan_runs, count)
        add_figures(result, engine, measured)
        fanned = measured["fan"]
        result.details[f"fan_{engine}"] = {
            "advance_ms": summary(fanned["advance"]),
            "end_to_pending_ms": summary(fanned["end_to_pending"]),
            "sink_advance_ms": summary(fanned["sink"]),
            "trigger_p50_ms": fanned["trigger_p50_ms"],
        }
        result.details[f"many_{engine}"] = measured["many"]
        series[engine] = {"advance_ms": fanned["advance"]}
    ctx.series.setdefault("W9", {})["fan"] = series
