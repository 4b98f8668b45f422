"""W2, throughput: four workers with two executors each; many trivial runs triggered at once
(16 requests in flight, over kept-alive connections, until all are in), on SQLite and on PostgreSQL.

Runs per second is the number of runs over the time from the first trigger sent to the moment
the runs list shows no pending or running run (polled every 0.25 s while runs are pending, then
every 10 ms): a run is final once the master has applied its worker's `run_ended`. The
triggering counts in that time: the runs were triggered as fast as the API took them. The
baseline is the rate of bare spawns of `true`, 8 at a time, measured just before (W0's, under
the load of the moment). The plot draws each run's `creation_date` and `completion_date` (the
latter from the worker's clock, when its process ended).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from tests.support.processes import API

from bench import rawhttp
from bench.context import Context
from bench.report import Figure, Workload, ratio, summary
from bench.w0_floor import spawns

WORKERS = 4
EXECUTORS = 2
IN_FLIGHT = 16
TARGET_RATE = 250.0
TARGET_FRACTION = 0.2


async def trigger_all(url: str, token: str, count: int) -> list[float]:
    """Trigger `count` runs of job `trivial` over IN_FLIGHT kept-alive connections, one request
    at a time on each; each request's ms. A raw HTTP client (bench/rawhttp.py): httpx's own
    CPU, on this 2-core machine, was taken from the server being measured."""
    timings: list[float] = []
    left = iter(range(count))
    headers = {"Authorization": f"Bearer {token}"}

    async def connection() -> None:
        client = rawhttp.Connection(url + API, headers)
        try:
            for _ in left:
                started = time.perf_counter()
                response = await client.request("POST", "/projects/p/jobs/trivial/trigger", {})
                if response.status_code != 201:
                    raise RuntimeError(f"trigger: {response.status_code} {response.body[:200]!r}")
                timings.append((time.perf_counter() - started) * 1000)
        finally:
            await client.close()

    await asyncio.gather(*(connection() for _ in range(IN_FLIGHT)))
    return timings


def measure(ctx: Context, engine: str, count: int) -> dict[str, Any]:
    with ctx.cluster(f"w2-{engine}", engine) as cluster:
        cluster.start_server()
        identifiers = [f"w{i}" for i in range(1, WORKERS + 1)]
        for identifier in identifiers:
            cluster.start_worker(identifier, executors=EXECUTORS, wait=False)
        cluster.wait_for_workers(identifiers)
        api = cluster.api
        api.put_project("p")
        api.put_job("trivial", [["true"]])
        # The baseline, under the load of the moment: bare spawns, 8 at a time.
        _, spawn_rate = asyncio.run(spawns(0, ctx.size(800, 40), 8))

        started = time.perf_counter()
        timings = asyncio.run(trigger_all(cluster.url, cluster.admin_token, count))
        triggered = time.perf_counter()

        api.wait_drained(ctx.size(900, 120), f"{count} runs to complete")
        observed = time.perf_counter()
        runs = api.runs("p")
    if len(runs) != count:
        raise RuntimeError(f"expected {count} runs, found {len(runs)}")
    statuses: dict[str, int] = {}
    for item in runs:
        statuses[item["status"]] = statuses.get(item["status"], 0) + 1
    if statuses.get("succeeded") != count:
        raise RuntimeError(f"not every run succeeded: {statuses}")
    created = [datetime.fromisoformat(r["creation_date"]) for r in runs]
    completed = [datetime.fromisoformat(r["completion_date"]) for r in runs]
    first = min(created)
    span = (max(completed) - first).total_seconds()
    return {
        "runs_per_second": count / (observed - started),
        "spawns_per_second": spawn_rate,
        "seconds": observed - started,
        "dates_runs_per_second": count / span,
        "dates_span_seconds": span,
        "trigger_seconds": triggered - started,
        "triggers_per_second": count / (triggered - started),
        "trigger_ms": summary(timings),
        "statuses": statuses,
        "completion_offsets": sorted((c - first).total_seconds() for c in completed),
        "creation_offsets": sorted((c - first).total_seconds() for c in created),
    }


def run(ctx: Context) -> Workload:
    count = ctx.size(2000, 16)
    result = Workload("W2", "throughput: 4 workers x 2 executors, runs triggered at once")
    result.size = {"runs": count, "workers": WORKERS, "executors": EXECUTORS, "in_flight": 16}
    series: dict[str, Any] = {}
    for engine in ("sqlite", "postgresql"):
        measured = measure(ctx, engine, count)
        rate = measured["runs_per_second"]
        floor = measured["spawns_per_second"]
        figure = Figure(
            f"{engine}_runs_per_second",
            f"runs/s, {engine}",
            rate,
            "/s",
            ratio=ratio(rate, floor),
            baseline=f"bare spawns/s, 8 at a time, just before ({floor:.0f}/s)",
            target=f">= {TARGET_RATE:g}/s and >= {TARGET_FRACTION:g}x spawns",
        )
        figure.met = rate >= TARGET_RATE and (figure.ratio or 0) >= TARGET_FRACTION
        result.add(figure)
        series[engine] = {
            "completion_offsets": measured.pop("completion_offsets"),
            "creation_offsets": measured.pop("creation_offsets"),
        }
        result.details[engine] = measured
    ctx.series["W2"] = series
    return result
