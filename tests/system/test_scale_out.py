"""Scale-out on PostgreSQL: two masters, two API servers and six workers; a thousand runs
triggered through both API servers while one master is killed half way. Every run succeeds
once, every log is whole, and requests reach the master concerned through any API server."""

from __future__ import annotations

import collections
import threading

import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import API, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
RUNS = 1000
APPEND = """
    import os, sys
    with open(sys.argv[1], "a") as journal:
        journal.write(os.environ["ORCHESTRA_RUN"] + "\\n")
    print("run", os.environ["ORCHESTRA_RUN"])
"""


def test_two_masters_one_killed_half_way_lose_and_repeat_nothing(cluster: Cluster) -> None:
    master1, m1 = cluster.start_role("master-1", "master", port=free_port())
    _master2, m2 = cluster.start_role("master-2", "master", port=free_port())
    _api1, a1 = cluster.start_role("api-1", "api", port=free_port())
    _api2, a2 = cluster.start_role("api-2", "api", port=free_port())
    clients = [
        httpx.Client(base_url=a + API, headers={"Authorization": f"Bearer {cluster.admin_token}"})
        for a in (a1, a2)
    ]
    journal = cluster.directory / "journal"
    clients[0].put("/projects/p", json={}).raise_for_status()
    job = {"steps": [{"name": "append", "command": py(APPEND, str(journal))}]}
    clients[1].put("/projects/p/jobs/append", json=job).raise_for_status()
    for index in range(6):
        urls = [m1, m2] if index < 3 else [m2, m1]
        cluster.start_worker(f"w{index}", executors=2, urls=urls, wait=False)
    wait_until(
        lambda: sum(w["is_active"] for w in clients[0].get("/workers").json()["items"]) == 6,
        60,
        "six active workers",
    )

    identifiers: list[str] = []
    lock = threading.Lock()

    def trigger(client: httpx.Client, count: int) -> None:
        for _ in range(count):
            response = client.post("/projects/p/jobs/append/trigger", json={})
            response.raise_for_status()
            with lock:
                identifiers.append(response.json()["identifier"])

    threads = [threading.Thread(target=trigger, args=(clients[i % 2], RUNS // 4)) for i in range(4)]
    for thread in threads:
        thread.start()

    def finished() -> int:
        page = clients[0].get("/projects/p/runs", params={"status": "succeeded", "limit": 500})
        return len(page.json()["items"])

    wait_until(lambda: finished() >= 300, 300, "a good part of the runs to succeed")
    master1.kill()  # kill -9, half way
    for thread in threads:
        thread.join(timeout=300)
    assert len(identifiers) == RUNS

    def all_final() -> bool:
        for status in ("pending", "running"):
            page = clients[1].get("/projects/p/runs", params={"status": status, "limit": 1})
            if page.json()["items"]:
                return False
        return True

    wait_until(all_final, 600, "every run to end")
    statuses: collections.Counter[str] = collections.Counter()
    cursor = None
    seen = []
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = clients[1].get("/projects/p/runs", params=params).json()
        for run in page["items"]:
            statuses[run["status"]] += 1
            seen.append(run["identifier"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert statuses == {"succeeded": RUNS}, statuses
    assert sorted(seen) == sorted(identifiers)
    lines = journal.read_text().split()
    assert len(lines) == RUNS and set(lines) == set(identifiers)  # each ran exactly once
    for run in identifiers[::50]:
        log = clients[0].get(f"/projects/p/runs/{run}/log").text
        assert log == f"run {run}\n"


def test_abort_through_one_api_server_reaches_the_other_master(cluster: Cluster) -> None:
    _master1, m1 = cluster.start_role("master-1", "master", port=free_port())
    _master2, m2 = cluster.start_role("master-2", "master", port=free_port())
    _api1, a1 = cluster.start_role("api-1", "api", port=free_port())
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    client = httpx.Client(base_url=a1 + API, headers=headers)
    client.put("/projects/p", json={}).raise_for_status()
    sleeper = "import time\nprint('up', flush=True)\ntime.sleep(120)"
    job = {"steps": [{"name": "sleep", "command": py(sleeper)}]}
    client.put("/projects/p/jobs/sleep", json=job).raise_for_status()
    cluster.start_worker("on-master-2", executors=2, urls=[m2], wait=False)
    wait_until(
        lambda: (
            (w := client.get("/workers/on-master-2")).status_code == 200 and w.json()["is_active"]
        ),
        60,
        "the worker on master 2",
    )
    run = client.post("/projects/p/jobs/sleep/trigger", json={}).json()
    wait_until(
        lambda: client.get(f"/projects/p/runs/{run['identifier']}").json()["status"] == "running",
        60,
        "the run to start",
    )
    assert m1 != m2
    client.post(f"/projects/p/runs/{run['identifier']}/abort").raise_for_status()
    wait_until(
        lambda: client.get(f"/projects/p/runs/{run['identifier']}").json()["status"] == "aborted",
        30,
        "the abort to take effect",
    )
