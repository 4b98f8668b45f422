"""W7, scale-out on PostgreSQL (issue 6): runs per second with one master against two, and
trigger-to-start latency with LISTEN/NOTIFY against polling alone, measured in the same run.

Part A: an all-in-one server (API and master) with four workers of two executors; then the
same plus a second master holding half the workers. Many trivial runs triggered at once; runs
per second until none is pending or running. Part B: an API server and a master as separate
processes, one worker; sequential trivial runs triggered through the API server; the start
delay is the run's start_date minus its creation_date (both stamped on this machine).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from tests.support.waiting import wait_until

from bench.context import Context
from bench.report import Figure, Workload, ratio, summary
from bench.w2_throughput import trigger_all


def throughput(ctx: Context, masters: int, count: int) -> float:
    with ctx.cluster(f"w7-masters-{masters}", "postgresql") as cluster:
        cluster.start_server()
        urls = [cluster.url]
        if masters == 2:
            urls.append(cluster.start_role("master-2", "master")[1])
        identifiers = [f"w{i}" for i in range(4)]
        for index, identifier in enumerate(identifiers):
            urls_of = [urls[index % len(urls)]]
            cluster.start_worker(identifier, executors=2, urls=urls_of, wait=False)
        cluster.wait_for_workers(identifiers)
        cluster.api.put_project("p")
        cluster.api.put_job("trivial", [["true"]])
        started = time.perf_counter()
        asyncio.run(trigger_all(cluster.url, cluster.admin_token, count))

        what = f"{count} runs to complete"
        cluster.api.wait_drained(ctx.size(600, 120), what)
        return count / (time.perf_counter() - started)


def start_latency(ctx: Context, notify: bool, count: int) -> dict[str, float]:
    settings = {"ORCHESTRA_LISTEN_NOTIFY": "true" if notify else "false"}
    label = "notify" if notify else "polling"
    with ctx.cluster(f"w7-{label}", "postgresql", settings) as cluster:
        _master, master_url = cluster.start_role("master", "master")
        _api, api_url = cluster.start_role("api", "api")
        cluster.use(api_url)
        cluster.start_worker("w", urls=[master_url])
        cluster.api.put_project("p")
        cluster.api.put_job("trivial", [["true"]])
        delays: list[float] = []
        for _ in range(count):
            run = cluster.api.trigger("trivial")

            def started(identifier: str = run["identifier"]) -> dict[str, Any] | None:
                found = cluster.api.get_run(identifier)
                return found if found["start_date"] else None

            done = wait_until(started, 30, "the run to start", interval=0.01)
            start = datetime.fromisoformat(done["start_date"])
            created = datetime.fromisoformat(done["creation_date"])
            delays.append((start - created).total_seconds() * 1000)
        return summary(delays)


def run(ctx: Context) -> Workload:
    count = ctx.size(800, 16)
    sequential = ctx.size(60, 4)
    result = Workload("W7", "scale-out on PostgreSQL: masters and LISTEN/NOTIFY")
    result.size = {"runs": count, "sequential_runs": sequential, "workers": 4, "executors": 2}
    one = throughput(ctx, 1, count)
    two = throughput(ctx, 2, count)
    result.add(Figure("one_master_runs_per_second", "runs/s, one master", one, "/s"))
    result.add(
        Figure(
            "two_masters_runs_per_second",
            "runs/s, two masters",
            two,
            "/s",
            ratio=ratio(two, one),
            baseline=f"one master ({one:.1f}/s)",
        )
    )
    notify = start_latency(ctx, True, sequential)
    polling = start_latency(ctx, False, sequential)
    result.add(
        Figure(
            "start_p50_polling_ms",
            "trigger to start via another process, polling alone, p50",
            polling["p50"],
            "ms",
        )
    )
    result.add(
        Figure(
            "start_p50_notify_ms",
            "trigger to start via another process, LISTEN/NOTIFY, p50",
            notify["p50"],
            "ms",
            ratio=ratio(notify["p50"], polling["p50"]),
            baseline=f"polling alone ({polling['p50']:.0f} ms)",
        )
    )
    result.details = {"notify_ms": notify, "polling_ms": polling}
    return result
