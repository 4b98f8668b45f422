"""A master paused (SIGSTOP) while it holds workers and runs, on PostgreSQL with two masters, then
resumed (SIGCONT): the other master carries on meanwhile, nothing is assigned twice, no schedule
due time fires twice, and every run ends, with every line once.

A stopped master is the "zombie" case: its connections stay open at the TCP level (the kernel
still acknowledges), its workers notice only by their WebSocket ping timeout (40 s), and when it
wakes it acts on what it knew before the pause. Every write it makes is a guarded update (a claim
only while the run is pending, a report only for the next sequence, a schedule due time under a
unique key), so what it decides late changes nothing that another master already decided.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.proof.cluster import ProofCluster, proof_job
from tests.proof.conftest import SOAK, choose
from tests.proof.invariants import Expect, Ledger
from tests.support.api import FINAL_STATUSES
from tests.support.waiting import wait_until

pytestmark = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)


def schedule_check(database_url: str) -> tuple[int, int, list[Any]]:
    """(fired due times, runs the schedules created, due times fired twice) from the database."""
    with psycopg.connect(database_url) as conn:
        fired = conn.execute(
            "SELECT count(*) FROM schedule_firing WHERE outcome = 'fired'"
        ).fetchone()
        runs = conn.execute(
            "SELECT count(*) FROM run WHERE source::jsonb ->> 'type' = 'schedule'"
        ).fetchone()
        twice = conn.execute(
            "SELECT schedule, due_date, count(*) FROM schedule_firing "
            "GROUP BY schedule, due_date HAVING count(*) > 1"
        ).fetchall()
    assert fired is not None and runs is not None
    return int(fired[0]), int(runs[0]), list(twice)


@pytest.mark.timeout(choose(300, 900))
def test_master_paused_then_resumed_assigns_nothing_twice(
    cluster: ProofCluster, ledger: Ledger, figure
) -> None:
    pause = choose(6.0, 60.0)
    lines = 20
    settings = {"ORCHESTRA_HEARTBEAT": "1", "ORCHESTRA_LEASE": "120"}
    master1, m1 = cluster.start_role("master-1", "master", settings=settings)
    _master2, m2 = cluster.start_role("master-2", "master", settings=settings)
    _api, a1 = cluster.start_role("api-1", "api", settings=settings)
    api = cluster.use(a1)
    api.put_project("p")
    api.put_job("j", [proof_job(ledger.journal, lines, 0.1)])
    if SOAK:
        body = {"job": "j", "expression": "* * * * *"}
        api.request("PUT", "/projects/p/schedules/every-minute", json=body)
    for name, urls in (("w1", [m1, m2]), ("w2", [m1, m2]), ("w3", [m2, m1]), ("w4", [m2, m1])):
        cluster.start_agent(name, urls, executors=2)
    expect = Expect(lines=lines, statuses=frozenset({"succeeded"}))

    # Runs keep coming before, during and after the pause.
    stop = threading.Event()
    errors: list[str] = []
    trigger_api = cluster.client(a1)

    def keep_triggering() -> None:
        while not stop.is_set():
            try:
                ledger.trigger(trigger_api, "j", expect)
            except AssertionError as exc:
                errors.append(str(exc))
            stop.wait(0.4)

    thread = threading.Thread(target=keep_triggering, daemon=True)
    thread.start()
    try:

        def held_by_master1() -> bool:
            runs = api.runs(status="running")
            return any(r["worker"] in ("w1", "w2") for r in runs)

        wait_until(held_by_master1, 60, "master 1's workers to run something")
        os.kill(master1.pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            before = set(ledger.triggered)
            time.sleep(pause)  # the fault itself
        finally:
            os.kill(master1.pid, signal.SIGCONT)
        # The other master carried on: runs triggered during the pause were dispatched by it.
        during = [
            r
            for r in api.runs()
            if r["identifier"] not in before and r["worker"] in ("w3", "w4") and r["start_date"]
        ]
        assert during, "no run triggered during the pause started on master 2's workers"
        time.sleep(2.0)  # more runs after the resume
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors[:3]
    figure("pause", pause, "s")

    report = ledger.verify(api, deadline=choose(120, 300), untracked_ok=SOAK)
    figure("runs", len(report.runs))
    assert master1.running(), "master 1 died"
    # Schedules: every due time fired at most once, and every schedule run is a firing's.
    fired, schedule_runs, twice = schedule_check(cluster.database_url)
    assert not twice, f"due times fired twice: {twice}"
    assert schedule_runs == fired, f"{schedule_runs} schedule runs for {fired} fired due times"
    if SOAK:
        assert fired >= 1, "the every-minute schedule never fired"
        per_minute = collections.Counter(
            r["creation_date"][:16]
            for r in report.runs.values()
            if r["source"]["type"] == "schedule"
        )
        assert max(per_minute.values()) <= 1, per_minute
        figure("schedule fires", fired)
    statuses = {r["status"] for r in report.runs.values()}
    assert statuses <= FINAL_STATUSES
    figure("pause to all final", round(time.monotonic() - paused_at, 1), "s")
