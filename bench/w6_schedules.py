"""W6, schedules: many schedules `* * * * *` of one job, inserted in bulk into the database
(with the next due time the scheduler would compute: the next minute), on one master with no
worker (firing means creating the run), on SQLite and on PostgreSQL.

How late: each run's `creation_date` minus the due minute; the figure is the last one's. The
master's CPU (utime + stime from /proc/PID/stat) over that minute, from the due time to just
before the next one (or to the last firing when that is later); its baseline is the same master
idle, with every schedule in place, in the seconds before the due time.

The smoke size uses a due time a few seconds ahead instead of the next minute, so that it does
not wait for the clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.cluster import Cluster
from tests.support.waiting import wait_until

from bench.context import Context
from bench.measure import CpuMeter, sync_engine
from bench.report import Figure, Workload, percentile, ratio, summary

TARGET_SECONDS = 2.0
BATCH = 5_000


def sleep_until(moment: datetime) -> None:
    """Wait for a time of the clock (not for a state)."""
    remaining = (moment - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


def insert_schedules(cluster: Cluster, count: int, due: datetime) -> float:
    from orchestra.storage.schema import schedule as schedule_table

    engine = sync_engine(cluster.database_url)
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        for start in range(0, count, BATCH):
            batch = [
                {
                    "project": "p",
                    "identifier": f"s{n:05d}",
                    "display_name": f"Schedule {n}",
                    "job": "tick",
                    "parameters": {},
                    "expression": "* * * * *",
                    "time_zone": "UTC",
                    "is_enabled": True,
                    "last_run": None,
                    "overlap": "skip",
                    "catchup": "latest",
                    "next_due_date": due,
                    "creation_date": now,
                    "update_date": now,
                }
                for n in range(start, min(count, start + BATCH))
            ]
            with engine.begin() as conn:
                conn.execute(schedule_table.insert(), batch)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def measure(ctx: Context, engine: str, count: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from orchestra.storage.schema import run as run_table

    with ctx.cluster(f"w6-{engine}", engine) as cluster:
        server = cluster.start_server()
        api = cluster.api
        api.put_project("p")
        api.put_job("tick", [["true"]])
        now = datetime.now(UTC)
        if ctx.smoke:
            due = now.replace(microsecond=0) + timedelta(seconds=2)
        else:
            due = (now + timedelta(seconds=80)).replace(second=0, microsecond=0)
            if due - now < timedelta(seconds=25):
                due += timedelta(minutes=1)
            if due - now > timedelta(seconds=75):
                due -= timedelta(minutes=1)
        insert_seconds = insert_schedules(cluster, count, due)
        idle = CpuMeter(server.pid)
        sleep_until(due)
        idle_percent = idle.percent()
        meter = CpuMeter(server.pid)

        database = sync_engine(cluster.database_url)
        try:

            def fired() -> bool:
                with database.connect() as conn:
                    created = conn.scalar(sa.select(sa.func.count()).select_from(run_table))
                return int(created or 0) >= count

            wait_until(fired, ctx.size(600, 120), f"{count} schedules to fire", interval=0.25)
            firing_cpu, firing_wall = meter.read()
            if not ctx.smoke:
                sleep_until(due + timedelta(seconds=59.5))
            minute_cpu, minute_wall = meter.read()
            with database.connect() as conn:
                created = [
                    r[0] for r in conn.execute(sa.select(run_table.c.creation_date)).fetchall()
                ]
                outcomes = dict(
                    conn.execute(
                        sa.text("SELECT outcome, count(*) FROM schedule_firing GROUP BY outcome")
                    ).all()
                )
        finally:
            database.dispose()
    lateness = [(c - due).total_seconds() for c in created]
    return {
        "due": due.isoformat(),
        "insert_seconds": insert_seconds,
        "lateness_s": summary(lateness),
        "last_s": max(lateness),
        "p50_s": percentile(lateness, 50),
        "fired_per_second": count / max(max(lateness), 1e-3),
        "idle_cpu_percent": idle_percent,
        "firing_cpu_percent": 100 * firing_cpu / firing_wall,
        "minute_cpu_percent": 100 * minute_cpu / minute_wall,
        "minute_window_seconds": minute_wall,
        "outcomes": outcomes,
    }


def run(ctx: Context) -> Workload:
    count = ctx.size(10_000, 20)
    result = Workload("W6", "schedules: every one due the same minute, no worker")
    result.size = {"schedules": count, "expression": "* * * * *"}
    trigger_ms = ctx.floor.get("trigger_ms")
    for engine in ("sqlite", "postgresql"):
        measured = measure(ctx, engine, count)
        result.details[engine] = measured
        serial = count * trigger_ms / 1000 if trigger_ms else None
        result.add(
            Figure(
                f"{engine}_last_late_seconds",
                f"last of {count} fired after the due time, {engine}",
                measured["last_s"],
                "s",
                ratio=ratio(measured["last_s"], serial),
                baseline=f"{count} API triggers one by one ({serial:.1f} s)" if serial else None,
                target=f"<= {TARGET_SECONDS:g} s",
                met=measured["last_s"] <= TARGET_SECONDS,
            )
        )
        result.add(
            Figure(
                f"{engine}_median_late_seconds",
                f"median schedule fired after the due time, {engine}",
                measured["p50_s"],
                "s",
                ratio=ratio(measured["p50_s"], serial),
                baseline=f"{count} API triggers one by one ({serial:.1f} s)" if serial else None,
            )
        )
        idle = measured["idle_cpu_percent"]
        result.add(
            Figure(
                f"{engine}_minute_cpu_percent",
                f"master CPU during the minute, {engine}",
                measured["minute_cpu_percent"],
                "% of a core",
                ratio=ratio(measured["minute_cpu_percent"], idle),
                baseline=f"idle before it ({idle:.2f}%)",
            )
        )
    return result
