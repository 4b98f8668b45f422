"""PostgreSQL restarted under load, cleanly (`-m fast`) and by a crash (`-m immediate`, with crash
recovery at the next start): while it is down the API answers 503 and never 500, every process
(API server, master, workers) reconnects by itself without being restarted, and nothing that was
acknowledged before the restart is missing after it.

The database is a PostgreSQL instance of the test's own (tests/proof/pgprivate.py), not the
machine's shared cluster, which other tests use at the same time: same binaries and the same
`pg_ctl stop -m MODE`, but nobody else's tests fail while it is down. The outage is held for a
few seconds (a minute in the soak profile) so that the API is seen answering during it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.proof import pgprivate
from tests.proof.cluster import ProofCluster, proof_job
from tests.proof.conftest import choose
from tests.proof.invariants import Expect, Ledger
from tests.support.cluster import TEST_SETTINGS
from tests.support.databases import ClusterDatabases
from tests.support.processes import API, healthy
from tests.support.waiting import wait_until

WHY_NOT = pgprivate.unavailable()
pytestmark = [
    pytest.mark.skipif(WHY_NOT is not None, reason=f"no private PostgreSQL: {WHY_NOT}"),
    pytest.mark.xdist_group("postgres-restart"),
]
OUTAGE = choose(4.0, 60.0)


@pytest.fixture(scope="module")
def private_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[pgprivate.PrivatePostgres, ClusterDatabases]]:
    """A private PostgreSQL, and bootstrapped databases on it."""
    server = pgprivate.PrivatePostgres()
    try:
        server.create()
        directory = tmp_path_factory.mktemp("private-pg-templates")
        databases = ClusterDatabases(directory, "proof", base_url=server.url + "postgres")
        yield server, databases
    finally:
        server.destroy()


@pytest.fixture
def restart_cluster(
    private_postgres: tuple[pgprivate.PrivatePostgres, ClusterDatabases], tmp_path: Path
) -> Iterator[tuple[ProofCluster, pgprivate.PrivatePostgres]]:
    server, databases = private_postgres
    server.ensure_up()
    with databases.database("postgresql", tmp_path) as (url, credentials):
        built = ProofCluster(tmp_path, url, credentials, TEST_SETTINGS)
        try:
            yield built, server
        finally:
            try:
                built.close()
            finally:
                server.ensure_up()  # never leave it down, whatever happened


@pytest.mark.timeout(choose(300, 600))
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load_answers_503_and_loses_nothing(
    restart_cluster: tuple[ProofCluster, pgprivate.PrivatePostgres],
    ledger: Ledger,
    mode: str,
    figure,
) -> None:
    cluster, postgres = restart_cluster
    settings = {"ORCHESTRA_HEARTBEAT": "1", "ORCHESTRA_LEASE": "300"}
    master, m1 = cluster.start_role("master-1", "master", settings=settings)
    api_server, a1 = cluster.start_role("api-1", "api", settings=settings)
    api = cluster.use(a1)
    api.put_project("p")
    api.put_job("j", [proof_job(ledger.journal, 10, 0.1)])
    workers = [cluster.start_agent(f"w{i}", [m1], executors=2) for i in (1, 2)]
    expect = Expect(lines=10, statuses=frozenset({"succeeded"}))

    stop = threading.Event()
    polled: list[tuple[float, int | str]] = []
    trigger_answers: collections.Counter[int | str] = collections.Counter()
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}

    def poll() -> None:
        with httpx.Client(base_url=a1 + API, headers=headers, timeout=10) as client:
            while not stop.is_set():
                try:
                    status: int | str = client.get("/projects/p/runs").status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                polled.append((time.monotonic(), status))
                stop.wait(0.05)

    def load() -> None:
        with httpx.Client(base_url=a1 + API, headers=headers, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post("/projects/p/jobs/j/trigger", json={})
                    trigger_answers[response.status_code] += 1
                    if response.status_code == 201:
                        ledger.add(response.json(), expect)
                except httpx.HTTPError as exc:
                    trigger_answers[type(exc).__name__] += 1
                stop.wait(0.2)

    threads = [threading.Thread(target=f, daemon=True) for f in (poll, load)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(api.runs(status="succeeded")) >= 5, 60, "five runs to succeed")
        acknowledged = {r["identifier"] for r in api.runs(status="succeeded")}
        down_at = time.monotonic()
        postgres.stop(mode)
        try:
            time.sleep(OUTAGE)  # the outage itself
        finally:
            postgres.start()
        up_at = time.monotonic()
        for url in (a1, m1):
            wait_until(lambda url=url: healthy(url), 60, f"{url} healthy again")
        recovered = time.monotonic()
        after = set(ledger.triggered)
        wait_until(lambda: len(set(ledger.triggered) - after) >= 5, 60, "triggers after it")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    statuses = collections.Counter(status for _, status in polled)
    during = [s for t, s in polled if down_at <= t <= up_at]
    assert 503 in during, f"no 503 seen while PostgreSQL was down: {collections.Counter(during)}"
    assert set(statuses) <= {200, 503}, f"answers while polling: {dict(statuses)}"
    assert set(trigger_answers) <= {201, 503}, f"answers to triggers: {dict(trigger_answers)}"
    unavailable = [t for t, s in polled if s == 503]
    figure(f"{mode}: outage held", OUTAGE, "s")
    figure(f"{mode}: API answering 503", round(unavailable[-1] - unavailable[0], 2), "s")
    figure(f"{mode}: polls during the outage", dict(collections.Counter(during)))
    figure(f"{mode}: PostgreSQL up to API and master healthy", round(recovered - up_at, 2), "s")
    figure(f"{mode}: trigger answers", dict(trigger_answers))

    # Every process reconnected by itself: none was restarted, and new runs ran.
    for process in (master, api_server, *workers):
        assert process.running(), f"{process.name} exited:\n{process.tail()}"
    for name in ("w1", "w2"):
        api.wait_for_worker(name, is_active=True, timeout=30)
    report = ledger.verify(api, deadline=120, untracked_ok=True)
    untracked = set(report.runs) - set(ledger.triggered)
    # A trigger whose commit the crash cut short may exist although its client got a 503.
    assert len(untracked) <= trigger_answers[503], untracked
    missing = [r for r in acknowledged if report.runs.get(r, {}).get("status") != "succeeded"]
    assert not missing, f"acknowledged runs missing or changed after the restart: {missing}"
    new = set(ledger.triggered) - after
    assert new and all(report.runs[r]["status"] == "succeeded" for r in new)
