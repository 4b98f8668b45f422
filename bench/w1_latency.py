"""W1, latency: one worker (one executor) on SQLite, trivial runs (one step, `true`) one after
the other.

Each run is timed as a user sees it: from just before `POST .../trigger` to the end of
`GET .../log?follow=true`, which the server ends when the run is final (the path of
`orchestra run trigger --follow`). Trigger-to-start is the run's `start_date` (when the worker
started the step) minus its `creation_date` (when the trigger was stored): both from clocks of
this machine. A few runs before the timed ones warm the processes up. The baseline is a bare
asyncio spawn of `true` timed after each run (W0's spawn, under the same load as the runs).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from tests.support.api import Api

from bench.context import Context
from bench.report import Figure, Workload, percentile, ratio, summary
from bench.w0_floor import spawn_once

TARGET_MULTIPLE = 20.0
WARM_UP = 3


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def timed_run(api: Api, job: str) -> dict[str, Any]:
    """Trigger one run and follow its log to the end; its timings in ms."""
    started = time.perf_counter()
    run = api.trigger(job)
    triggered = time.perf_counter()
    path = f"/projects/p/runs/{run['identifier']}/log"
    with api.http.stream("GET", path, params={"follow": "true"}) as response:
        for _ in response.iter_bytes():
            pass
    ended = time.perf_counter()
    final = api.get_run(run)
    if final["status"] != "succeeded":
        raise RuntimeError(f"run {run['identifier']} ended {final['status']}: {final}")
    return {
        "completion_ms": (ended - started) * 1000,
        "trigger_response_ms": (triggered - started) * 1000,
        "start_ms": seconds_between(final["creation_date"], final["start_date"]) * 1000,
        "stored_completion_ms": seconds_between(final["creation_date"], final["completion_date"])
        * 1000,
    }


def run(ctx: Context) -> Workload:
    count = ctx.size(200, 5)
    result = Workload("W1", "latency: one worker, sequential trivial runs (SQLite)")
    result.size = {"runs": count, "workers": 1, "executors": 1, "engine": "sqlite"}
    with ctx.cluster("w1", "sqlite") as cluster:
        cluster.start_server()
        cluster.start_worker("w1", executors=1)
        api = cluster.api
        api.put_project("p")
        api.put_job("trivial", [["true"]])
        for _ in range(WARM_UP):
            timed_run(api, "trivial")
        # A bare spawn after each run: the baseline, under the same load as the runs (on a
        # shared machine the load changes from one minute to the next).
        loop = asyncio.new_event_loop()
        samples = []
        spawns = []
        try:
            for _ in range(count):
                samples.append(timed_run(api, "trivial"))
                spawns.append(loop.run_until_complete(spawn_once()) * 1000)
        finally:
            loop.close()

    completion = [s["completion_ms"] for s in samples]
    start = [s["start_ms"] for s in samples]
    spawn = percentile(spawns, 50)
    baseline = f"bare spawn between the runs ({spawn:.2f} ms)"
    for name, values, label in (
        ("completion", completion, "trigger to completion"),
        ("start", start, "trigger to start"),
    ):
        for q in (50, 95, 99):
            value = percentile(values, q)
            figure = Figure(
                f"{name}_p{q}_ms",
                f"{label}, p{q}",
                value,
                "ms",
                ratio=ratio(value, spawn),
                baseline=baseline,
            )
            if name == "completion" and q == 50:
                figure.target = f"<= {TARGET_MULTIPLE:g}x spawn"
                figure.met = figure.ratio is not None and figure.ratio <= TARGET_MULTIPLE
            result.add(figure)
    result.details = {
        "completion_ms": summary(completion),
        "start_ms": summary(start),
        "trigger_response_ms": summary([s["trigger_response_ms"] for s in samples]),
        "stored_completion_ms": summary([s["stored_completion_ms"] for s in samples]),
        "interleaved_spawn_ms": summary(spawns),
        "w0_spawn_median_ms": ctx.floor.get("spawn_median_ms"),
    }
    ctx.floor["trigger_ms"] = percentile([s["trigger_response_ms"] for s in samples], 50)
    ctx.series["W1"] = {"completion_ms": completion, "start_ms": start, "spawn_ms": spawn}
    return result
