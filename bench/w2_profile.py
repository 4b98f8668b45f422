"""Where W2's time goes: `python bench/w2_profile.py [--engine sqlite|postgresql] [--runs N]`.

The W2 cluster (4 workers x 2 executors, trivial runs triggered 16 at a time), measured from
the outside: each kind of process's CPU (server, agents, spawners, PostgreSQL's backends, this
client) and the machine's, user and system time apart, from /proc, over the trigger phase and
the rest; then, from the runs' own dates, how long each stage of a run's cycle took (assignment
to the step's start, the step, its end to the master applying it, and the next assignment to
the same worker). With 8 executors the rate is 8 over that cycle, and each stage shows where a
run waits. On PostgreSQL, also the transactions committed and rows read per run.

Prints a small report; nothing is written but, with `--py-spy FILE`, the server's samples (raw
format: one line per stack and its count). docs/performance.md ("What limits each figure now")
was measured with this.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.cluster import Cluster
from tests.support.databases import admin_connection, database_name
from tests.support.procfs import tagged_pids

from bench.context import Context, postgres_server
from bench.w0_floor import spawns
from bench.w2_throughput import EXECUTORS, WORKERS, trigger_all

TICK = os.sysconf("SC_CLK_TCK")
CLUSTERS = itertools.count()
Sample = dict[str, float]


def kind(pid: int) -> str | None:
    """What a process of the cluster is, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return None
    if b"orchestra.worker.spawner" in argv:
        return "spawners"
    if b"worker" in argv:
        return "agents"
    if b"server" in argv:
        return "server"
    return "other"


def postgres_pids() -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm") as handle:
                    if handle.read().startswith("postgres"):
                        found.append(int(name))
            except OSError:
                pass
    return found


def add_cpu(sample: Sample, name: str, pid: int) -> None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return
    user, system = int(fields[11]) / TICK, int(fields[12]) / TICK
    sample[name] = sample.get(name, 0.0) + user + system
    sample[f"{name} (system)"] = sample.get(f"{name} (system)", 0.0) + system


def snapshot(tag: str) -> dict[tuple[str, int], Sample]:
    """CPU seconds so far, by (kind, pid), and the machine's (busy, and system) as pid 0."""
    taken: dict[tuple[str, int], Sample] = {}
    for pid in tagged_pids(tag):
        name = kind(pid)
        if name is not None:
            add_cpu(taken.setdefault((name, pid), {}), name, pid)
    for pid in postgres_pids():
        add_cpu(taken.setdefault(("postgresql", pid), {}), "postgresql", pid)
    own = os.times()
    taken[("bench client", 0)] = {"bench client": own.user + own.system}
    with open("/proc/stat") as handle:
        ticks = [float(x) for x in handle.readline().split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    taken[("machine", 0)] = {
        "machine": busy / TICK,
        "machine (system)": (ticks[2] + ticks[5] + ticks[6]) / TICK,
    }
    return taken


def spent(before: dict[tuple[str, int], Sample], after: dict[tuple[str, int], Sample]) -> Sample:
    total: Sample = {}
    for key, values in after.items():
        earlier = before.get(key, {})
        for name, value in values.items():
            total[name] = total.get(name, 0.0) + value - earlier.get(name, 0.0)
    return total


def run_dates(cluster: Cluster) -> list[list[Any]]:
    query = "SELECT worker, assignment_date, start_date, completion_date, update_date FROM run"
    if cluster.engine == "sqlite":
        with sqlite3.connect(cluster.directory / "orchestra.sqlite") as conn:
            rows = conn.execute(query).fetchall()
        return [[r[0], *(datetime.fromisoformat(v) for v in r[1:])] for r in rows]
    import psycopg

    with psycopg.connect(cluster.database_url.replace("+psycopg", "")) as conn:
        return [list(r) for r in conn.execute(query)]


def stages(rows: list[list[Any]]) -> dict[str, list[float]]:
    """Milliseconds of each stage of the runs' cycle."""

    def ms(start: datetime, end: datetime) -> float:
        return (end - start).total_seconds() * 1000

    found: dict[str, list[float]] = {
        "assignment to step start": [],
        "the step": [],
        "step end to applied": [],
        "applied to next assignment": [],
    }
    assigned: dict[str, list[datetime]] = {}
    for worker, assignment, *_ in rows:
        assigned.setdefault(worker, []).append(assignment)
    for dates in assigned.values():
        dates.sort()
    for worker, assignment, start, completion, update in rows:
        found["assignment to step start"].append(ms(assignment, start))
        found["the step"].append(ms(start, completion))
        found["step end to applied"].append(ms(completion, update))
        later = assigned[worker]
        position = bisect.bisect_right(later, update)
        if position < len(later):
            found["applied to next assignment"].append(ms(update, later[position]))
    return found


def dispatch_passes(cluster: Cluster) -> float:
    """The master's dispatch passes so far (its /metrics)."""
    text = httpx.get(cluster.url + "/metrics", headers=cluster.api.http.headers).text
    found = re.search(r"^orchestra_dispatch_passes_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def postgres_counts(name: str) -> tuple[int, ...]:
    with admin_connection(postgres_server()) as conn:
        row = conn.execute(
            "SELECT xact_commit, tup_updated, tup_inserted, tup_fetched FROM pg_stat_database"
            " WHERE datname = %s",
            (name,),
        ).fetchone()
    return tuple(row or (0, 0, 0, 0))


def attach_py_spy(tag: str, output: Path, what: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the server, or one of the agents or spawners (only while it holds the
    GIL), into `output`, raw format."""
    server = min(pid for pid in tagged_pids(tag) if kind(pid) == what)
    # The one installed beside this interpreter (`pip install py-spy`), or else on PATH.
    beside = Path(sys.executable).with_name("py-spy")
    command = [
        str(beside) if beside.exists() else "py-spy",
        "record",
        "--nonblocking",
        "--gil",
        "-r",
        "250",
        "-f",
        "raw",
    ]
    return subprocess.Popen(
        [*command, "-o", str(output), "-p", str(server)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile(
    engine: str, runs: int, ctx: Context, py_spy: Path | None = None, py_spy_of: str = "server"
) -> None:
    # A directory per cluster: a repeat finding the last one's log would read its address.
    name = f"w2-profile-{engine}-{os.getpid()}-{next(CLUSTERS)}"
    with ctx.cluster(name, engine) as cluster:
        cluster.start_server()
        identifiers = [f"w{i}" for i in range(1, WORKERS + 1)]
        for identifier in identifiers:
            cluster.start_worker(identifier, executors=EXECUTORS, wait=False)
        cluster.wait_for_workers(identifiers)
        cluster.api.put_project("p")
        cluster.api.put_job("trivial", [["true"]])
        _, spawn_rate = asyncio.run(spawns(0, max(40, runs // 2), 8))
        pg_name = database_name(cluster.database_url) if engine == "postgresql" else None
        counted = postgres_counts(pg_name) if pg_name else None

        passes_before = dispatch_passes(cluster)
        sampler = attach_py_spy(cluster.tag, py_spy, py_spy_of) if py_spy is not None else None
        first = snapshot(cluster.tag)
        started = time.perf_counter()
        asyncio.run(trigger_all(cluster.url, cluster.admin_token, runs))
        triggered_snapshot, triggered = snapshot(cluster.tag), time.perf_counter()

        cluster.api.wait_drained(900, f"{runs} runs to end")
        last, ended = snapshot(cluster.tag), time.perf_counter()
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(30)
        rate = runs / (ended - started)
        print(
            f"{engine}: {rate:.0f} runs/s, {rate / spawn_rate:.3f}x the bare-spawn rate just "
            f"before ({spawn_rate:.0f}/s); triggers {triggered - started:.2f} s, "
            f"the rest {ended - triggered:.2f} s"
        )
        phases = (
            ("triggers, % of a core", first, triggered_snapshot, triggered - started),
            ("the rest, % of a core", triggered_snapshot, last, ended - triggered),
        )
        for label, before, after, seconds in phases:
            used = spent(before, after)
            shown = ", ".join(f"{k} {v / seconds * 100:.0f}" for k, v in sorted(used.items()))
            print(f"  {label}: {shown}")
        used = spent(first, last)
        shown = ", ".join(f"{k} {v / runs * 1000:.2f}" for k, v in sorted(used.items()))
        print(f"  CPU per run, ms: {shown}")
        passes = dispatch_passes(cluster) - passes_before
        print(f"  dispatch passes per run: {passes / runs:.2f}")
        for name, values in stages(run_dates(cluster)).items():
            values.sort()
            if values:
                print(
                    f"  {name}, ms: p50 {values[len(values) // 2]:.1f}, "
                    f"p90 {values[int(len(values) * 0.9)]:.1f}, mean {statistics.mean(values):.1f}"
                )
        if counted is not None and pg_name:
            now = postgres_counts(pg_name)
            per_run = [(b - a) / runs for a, b in zip(counted, now, strict=True)]
            print(
                "  PostgreSQL per run: commits {:.2f}, rows updated {:.2f}, inserted {:.2f}, "
                "read {:.1f}".format(*per_run)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--scratch", type=Path, default=Path("var/bench"))
    parser.add_argument(
        "--py-spy", type=Path, help="sample a process with py-spy into this file (raw format)"
    )
    parser.add_argument("--py-spy-of", choices=("server", "agents", "spawners"), default="server")
    options = parser.parse_args()
    engines = ("sqlite", "postgresql") if options.engine == "both" else (options.engine,)
    ctx = Context(smoke=False, scratch=options.scratch)
    try:
        for _ in range(options.repeat):
            for engine in engines:
                profile(engine, options.runs, ctx, options.py_spy, options.py_spy_of)
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
