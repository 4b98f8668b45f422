"""Many pipeline runs at once, for the proof suite and bench W9: trigger them over kept-alive
connections, wait until none is running, and count each node's runs in the database itself
(not through the API), to show that no node ran twice and none was left without its run."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa

from bench import rawhttp
from tests.support.api import Api
from tests.support.processes import API
from tests.support.waiting import wait_until


async def trigger_pipelines(
    url: str, token: str, path: str, count: int, in_flight: int = 16
) -> tuple[list[str], list[float]]:
    """POST `path` (a pipeline's trigger, under the API) `count` times over `in_flight`
    kept-alive connections: the pipeline runs' identifiers and each request's ms."""
    identifiers: list[str] = []
    timings: list[float] = []
    left = iter(range(count))
    headers = {"Authorization": f"Bearer {token}"}

    async def connection() -> None:
        client = rawhttp.Connection(url + API, headers)
        try:
            for _ in left:
                started = time.perf_counter()
                response = await client.request("POST", path, {})
                if response.status_code != 201:
                    raise RuntimeError(f"trigger: {response.status_code} {response.body[:200]!r}")
                timings.append((time.perf_counter() - started) * 1000)
                identifiers.append(str(response.json()["identifier"]))
        finally:
            await client.close()

    await asyncio.gather(*(connection() for _ in range(in_flight)))
    return identifiers, timings


def wait_none_running(api: Api, timeout: float, project: str = "p") -> None:
    """Poll until the project has no running pipeline run (every node final)."""

    def none_running() -> bool:
        path = f"/projects/{project}/pipeline-runs"
        page = api.request("GET", path, 200, params={"status": "running", "limit": 1}).json()
        return not page["items"]

    wait_until(none_running, timeout, "every pipeline run to end", interval=0.25)


@dataclass
class Tally:
    """What the database holds of some pipeline runs."""

    statuses: Counter[str] = field(default_factory=Counter)  # pipeline runs by status
    node_statuses: Counter[str] = field(default_factory=Counter)
    runs: int = 0  # runs that belong to these pipeline runs
    twice: list[tuple[str, str, int]] = field(default_factory=list)  # (run, node, runs)
    without_run: list[tuple[str, str]] = field(default_factory=list)  # job nodes with none
    missing: list[str] = field(default_factory=list)  # identifiers not in the database


def sync_url(database_url: str) -> sa.engine.URL:
    url = sa.engine.make_url(database_url)
    return url.set(drivername="postgresql+psycopg") if url.get_backend_name() != "sqlite" else url


def tally(database_url: str, identifiers: list[str]) -> Tally:
    """Count, in the database, the runs of each node of these pipeline runs (every node of the
    pipelines counted is a job node)."""
    metadata = sa.MetaData()
    engine = sa.create_engine(sync_url(database_url))
    wanted = set(identifiers)
    result = Tally()
    try:
        pipeline_run = sa.Table("pipeline_run", metadata, autoload_with=engine)
        node = sa.Table("pipeline_node", metadata, autoload_with=engine)
        run = sa.Table("run", metadata, autoload_with=engine)
        with engine.connect() as conn:
            found = {
                row.identifier: row.status
                for row in conn.execute(sa.select(pipeline_run.c.identifier, pipeline_run.c.status))
                if str(row.identifier) in wanted
            }
            counts = Counter[tuple[str, str]]()
            query = (
                sa.select(run.c.pipeline_run, run.c.pipeline_node, sa.func.count())
                .where(run.c.pipeline_run.is_not(None))
                .group_by(run.c.pipeline_run, run.c.pipeline_node)
            )
            for owner, name, count in conn.execute(query):
                if str(owner) in wanted:
                    counts[(str(owner), str(name))] = int(count)
            nodes = conn.execute(sa.select(node.c.pipeline_run, node.c.node, node.c.status))
            for owner, name, status in nodes:
                if str(owner) not in wanted:
                    continue
                result.node_statuses[str(status)] += 1
                if counts.get((str(owner), str(name)), 0) == 0:
                    result.without_run.append((str(owner), str(name)))
    finally:
        engine.dispose()
    result.statuses.update(str(s) for s in found.values())
    result.missing = sorted(wanted - {str(i) for i in found})
    result.runs = sum(counts.values())
    result.twice = [(r, n, c) for (r, n), c in counts.items() if c > 1]
    return result
