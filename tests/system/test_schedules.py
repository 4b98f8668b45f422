"""A schedule end to end: the real server's scheduler fires it at the minute, once, and a real
worker runs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.waiting import wait_until


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_schedule_fires_at_its_due_minute_and_runs_on_a_worker(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w")
    cluster.api.put_job("tick", [py("import os; print('scheduled', os.environ['ORCHESTRA_RUN'])")])
    body = {"identifier": "every-minute", "job": "tick", "expression": "* * * * *"}
    created = cluster.api.request("POST", "/projects/p/schedules", 201, json=body).json()
    due = datetime.fromisoformat(created["next_due_dates"][0])
    assert due.second == 0 and due - datetime.now(UTC) <= timedelta(seconds=60)

    def fired() -> list[dict[str, object]]:
        return cluster.api.runs(job="tick")

    runs = wait_until(fired, 75, "the schedule to fire")
    run = cluster.api.wait_for_status(runs[0], "succeeded")
    assert run["source"] == {"type": "schedule", "schedule": "every-minute"}
    created_at = datetime.fromisoformat(run["creation_date"])
    assert timedelta(0) <= created_at - due < timedelta(seconds=5)
    schedule = cluster.api.request("GET", "/projects/p/schedules/every-minute", 200).json()
    assert schedule["last_run"] == run["identifier"]
    assert len(cluster.api.runs(job="tick")) == 1  # once for that minute
