"""W5, the API at scale: a million runs (each with its run_step row) inserted in bulk straight
into the database with SQLAlchemy Core executemany, then the latency of the runs API through a
real server, on PostgreSQL and on SQLite.

The runs belong to one project and 20 jobs, 90% succeeded, 7% failed, 2% cancelled and 1%
aborted, a quarter of a second apart. PostgreSQL is ANALYZEd after the load (autovacuum would
do it within a minute); SQLite is left as the product leaves it (nothing runs ANALYZE there).

Queries, each repeated one after the other on one keep-alive connection after a warm-up:
the first page of the runs list; a page half way down (its cursor built for that position with
the project's own cursor encoding, and checked); the list filtered by status (`failed`) and by
job (one of 20); and a run's detail (a different random run each time). The baseline is
`GET /me`, the cheapest authenticated request, on the same server. Each query is also timed
on a new connection per request (connecting included), in the details: see docs/performance.md
for why the two differ.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.api import Api
from tests.support.cluster import Cluster
from tests.support.processes import API

from bench.context import Context
from bench.report import Figure, Workload, percentile, ratio, summary

JOBS = 20
SPACING = timedelta(seconds=0.25)
BATCH = 20_000
TARGET_P99_MS = 20.0


def identifier(index: int) -> str:
    """Run `index`'s identifier: a UUID that looks random but can be found again."""
    return str(uuid.UUID(bytes=hashlib.md5(b"%d" % index).digest(), version=4))


def status_of(index: int) -> str:
    bucket = (index * 7919) % 100
    if bucket < 90:
        return "succeeded"
    if bucket < 97:
        return "failed"
    if bucket < 99:
        return "cancelled"
    return "aborted"


STEP_STATUS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "skipped",
    "aborted": "aborted",
}


def rows(base: datetime, start: int, stop: int) -> tuple[list[dict[str, Any]], list[dict]]:
    runs = []
    steps = []
    for index in range(start, stop):
        created = base + SPACING * index
        status = status_of(index)
        ran = status != "cancelled"
        run_id = identifier(index)
        runs.append(
            {
                "identifier": run_id,
                "project": "p",
                "job": f"job-{index % JOBS:02d}",
                "parameters": {},
                "source": {"type": "api", "user": "admin"},
                "worker": f"w{index % 4 + 1}" if ran else None,
                "status": status,
                "workspace": "",
                "start_date": created + timedelta(milliseconds=50) if ran else None,
                "completion_date": created + timedelta(milliseconds=500),
                "should_cancel": status == "cancelled",
                "should_abort": status == "aborted",
                "reason": "cancelled" if status == "cancelled" else None,
                "event_sequence": 4 if ran else 0,
                "log_size": 120 if ran else 0,
                "priority": 0,
                "attempt": 1,
                "creation_date": created,
                "update_date": created + timedelta(milliseconds=500),
            }
        )
        steps.append(
            {
                "run": run_id,
                "index": 0,
                "name": "build",
                "command": ["make", "build"],
                "status": STEP_STATUS[status],
                "exit_code": {"succeeded": 0, "failed": 2}.get(status),
                "start_date": created + timedelta(milliseconds=60) if ran else None,
                "completion_date": created + timedelta(milliseconds=490) if ran else None,
                "log_size": 120 if ran else 0,
            }
        )
    return runs, steps


def load(cluster: Cluster, count: int, base: datetime) -> dict[str, Any]:
    """Insert `count` runs and their steps in batches; ANALYZE PostgreSQL."""
    import sqlalchemy as sa

    from bench.measure import sync_engine
    from orchestra.storage.schema import run as run_table
    from orchestra.storage.schema import run_step as step_table

    engine = sync_engine(cluster.database_url)
    started = time.perf_counter()
    try:
        for start in range(0, count, BATCH):
            runs, steps = rows(base, start, min(count, start + BATCH))
            with engine.begin() as conn:
                conn.execute(run_table.insert(), runs)
                conn.execute(step_table.insert(), steps)
        inserted = time.perf_counter() - started
        if cluster.engine == "postgresql":
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    sa.text("ANALYZE run, run_step")
                )
    finally:
        engine.dispose()
    return {
        "insert_seconds": inserted,
        "runs_inserted_per_second": count / inserted,
        "analyze_seconds": time.perf_counter() - started - inserted,
    }


def timed(api: Api, path: str, params: dict[str, Any] | None = None) -> float:
    """One request on the client's keep-alive connection, in ms."""
    started = time.perf_counter()
    response = api.http.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text[:200]}")
    return elapsed


def timed_fresh(api: Api, path: str, params: dict[str, Any] | None = None) -> float:
    """One request on a new connection (closed after), in ms, connecting included."""
    parsed = urllib.parse.urlsplit(api.url)
    target = API + path + ("?" + urllib.parse.urlencode(params) if params else "")
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=60)
    try:
        connection.request("GET", target, headers={"Authorization": f"Bearer {api.token}"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {target}: {response.status} {body[:200]!r}")
    return elapsed


def database_side(cluster: Cluster, deep_date: datetime, deep_id: str, ids: list[str]) -> dict:
    """The queries the API makes for each request, straight on the database: the plan, and the
    median time to run them and fetch the rows (what is left is the API's own time)."""
    import sqlalchemy as sa

    from bench.measure import sync_engine

    date = deep_date.isoformat(sep=" ")
    if cluster.engine == "sqlite":
        date = deep_date.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    order = " ORDER BY creation_date DESC, identifier DESC LIMIT 51"
    listed = ", ".join(f"'{i}'" for i in ids)
    queries = {
        "first_page": "SELECT * FROM run WHERE project = 'p'" + order,
        "deep_page": "SELECT * FROM run WHERE project = 'p' AND (creation_date, identifier) < "
        f"('{date}', '{deep_id}')" + order,
        "by_status": "SELECT * FROM run WHERE project = 'p' AND status = 'failed'" + order,
        "by_job": "SELECT * FROM run WHERE project = 'p' AND job = 'job-07'" + order,
        "steps_of_page": f"SELECT * FROM run_step WHERE run IN ({listed}) ORDER BY run, index",
        "detail": f"SELECT * FROM run WHERE identifier = '{ids[0]}' AND project = 'p'",
    }
    if cluster.engine == "sqlite":
        queries["steps_of_page"] = queries["steps_of_page"].replace(" index", ' "index"')
    engine = sync_engine(cluster.database_url)
    found: dict[str, Any] = {}
    try:
        with engine.connect() as conn:
            for name, sql in queries.items():
                explain = "EXPLAIN QUERY PLAN " if cluster.engine == "sqlite" else "EXPLAIN "
                plan = [" ".join(str(c) for c in r) for r in conn.execute(sa.text(explain + sql))]
                times = []
                for _ in range(21):
                    started = time.perf_counter()
                    conn.execute(sa.text(sql)).fetchall()
                    times.append((time.perf_counter() - started) * 1000)
                found[name] = {"ms_p50": percentile(times, 50), "plan": plan[:6]}
    finally:
        engine.dispose()
    return found


def measure(ctx: Context, engine: str, count: int, repeat: int) -> dict[str, Any]:
    from orchestra.storage.records import encode_cursor

    base = datetime.now(UTC).replace(microsecond=0) - SPACING * count - timedelta(hours=1)
    with ctx.cluster(f"w5-{engine}", engine) as cluster:
        cluster.start_server()
        api = cluster.api
        api.put_project("p")
        for job in range(JOBS):
            api.put_job(f"job-{job:02d}", [["make", "build"]])
        loaded = load(cluster, count, base)

        # Half way down the list (newest first): the cursor of the run at `position`, so the
        # page starts with the one after it.
        position = count // 2
        index = count - 1 - position
        deep = encode_cursor([base + SPACING * index, identifier(index)])
        page = api.request("GET", "/projects/p/runs", 200, params={"cursor": deep}).json()
        if page["items"][0]["identifier"] != identifier(index - 1):
            raise RuntimeError("the deep cursor does not land where it should")

        picker = random.Random(9)
        queries: dict[str, Callable[[], tuple[str, dict[str, Any] | None]]] = {
            "me": lambda: ("/me", None),
            "first_page": lambda: ("/projects/p/runs", None),
            "deep_page": lambda: ("/projects/p/runs", {"cursor": deep}),
            "by_status": lambda: ("/projects/p/runs", {"status": "failed"}),
            "by_job": lambda: ("/projects/p/runs", {"job": "job-07"}),
            "detail": lambda: (f"/projects/p/runs/{identifier(picker.randrange(count))}", None),
        }
        samples: dict[str, list[float]] = {}
        fresh: dict[str, list[float]] = {}
        for name, query in queries.items():
            for _ in range(ctx.size(10, 1)):  # warm up
                timed(api, *query())
            samples[name] = [timed(api, *query()) for _ in range(repeat)]
            fresh[name] = [timed_fresh(api, *query()) for _ in range(repeat)]
        page_ids = [identifier(count - 1 - n) for n in range(50)]
        database = database_side(cluster, base + SPACING * index, identifier(index), page_ids)
    return {
        "load": loaded,
        "samples": samples,
        "fresh": fresh,
        "deep_position": position + 1,
        "database": database,
    }


LABELS = {
    "first_page": "runs list, first page",
    "deep_page": "runs list, page half way down",
    "by_status": "runs list, status=failed",
    "by_job": "runs list, job=job-07",
    "detail": "run detail",
}


def run(ctx: Context) -> Workload:
    count = ctx.size(1_000_000, 2_000)
    repeat = ctx.size(200, 5)
    result = Workload("W5", "API at scale: runs queries over a bulk-loaded database")
    result.size = {"runs": count, "run_steps": count, "jobs": JOBS, "repeat": repeat}
    for engine in ("postgresql", "sqlite"):
        measured = measure(ctx, engine, count, repeat)
        samples = measured["samples"]
        me = percentile(samples["me"], 50)
        baseline = f"GET /me ({me:.1f} ms)"
        for name, label in LABELS.items():
            for q in (50, 99):
                value = percentile(samples[name], q)
                figure = Figure(
                    f"{engine}_{name}_p{q}_ms",
                    f"{label}, p{q}, {engine}",
                    value,
                    "ms",
                    ratio=ratio(value, me),
                    baseline=baseline,
                )
                if q == 99:
                    figure.target = f"< {TARGET_P99_MS:g} ms"
                    figure.met = value < TARGET_P99_MS
                result.add(figure)
        result.details[engine] = {
            "load": measured["load"],
            "deep_position": measured["deep_position"],
            "database_side": measured["database"],
            "ms": {name: summary(values) for name, values in samples.items()},
            "fresh_connection_ms": {
                name: summary(values) for name, values in measured["fresh"].items()
            },
        }
    return result
