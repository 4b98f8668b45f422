"""Cancel and abort racing dispatch on many runs: random cancels and aborts through the API while
runs are being assigned and run. A cancelled run never starts, an aborted run's processes (the
step and the child it started) are gone within 10 s of the abort, and every run ends with one
final status that agrees with what the API answered."""

from __future__ import annotations

import collections
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.proof.cluster import ProofCluster, percentile, proof_job
from tests.proof.conftest import choose
from tests.proof.invariants import Expect, Ledger, all_runs
from tests.support.api import FINAL_STATUSES
from tests.support.procfs import process_gone

ABORT_LIMIT = 10.0


@pytest.mark.timeout(choose(300, 1200))
def test_cancel_and_abort_races_one_final_status_each(
    cluster: ProofCluster, ledger: Ledger, figure
) -> None:
    count, lines = choose(200, 1000), 5
    cluster.start()
    for name in ("w1", "w2"):
        cluster.start_agent(name, executors=4)
    cluster.api.put_job("j", [proof_job(ledger.journal, lines, 0.15, child=True)])
    expect = Expect(lines=lines)
    rng = random.Random(7)
    lock = threading.Lock()
    answers: dict[str, dict[str, int]] = collections.defaultdict(dict)
    aborted_at: dict[str, float] = {}
    gone_after: dict[str, float] = {}
    done = threading.Event()
    when_running: dict[str, float] = {}  # runs to abort once seen running: the delay then

    def act(run: str, action: str, delay: float) -> None:
        client = clients[threading.get_ident() % len(clients)]
        time.sleep(delay)  # when the action lands (the race itself)
        requested = time.monotonic()
        response = client.cancel(run) if action == "cancel" else client.abort(run)
        with lock:
            answers[run][action] = response.status_code
            if action == "abort" and response.status_code == 200:
                aborted_at[run] = requested

    def watch_processes() -> None:
        """Note when each aborted run's step and child are both gone."""
        while not done.is_set():
            pids = ledger.pids()
            with lock:
                pending = [r for r in aborted_at if r not in gone_after and r in pids]
            for run in pending:
                pid, child = pids[run]
                if process_gone(pid) and (not child or process_gone(child)):
                    gone_after[run] = time.monotonic() - aborted_at[run]
            time.sleep(0.05)

    clients = [cluster.client() for _ in range(4)]
    watcher = threading.Thread(target=watch_processes, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(max_workers=24) as pool:
        futures = []
        for index in range(count):
            run = ledger.trigger(clients[index % 4], "j", expect)["identifier"]
            action = rng.choices(["cancel", "abort", "abort-running", "none"], [4, 1, 3, 2])[0]
            if action == "abort-running":
                when_running[run] = rng.uniform(0, 0.6)
            elif action != "none":
                futures.append(pool.submit(act, run, action, rng.uniform(0, 2.0)))
            if action.startswith("abort") and rng.random() < 0.3:
                # Some runs get both, in either order.
                futures.append(pool.submit(act, run, "cancel", rng.uniform(0, 2.0)))
        # Aborts that land while the run is being started, run, or ended.
        limit, missed = time.monotonic() + choose(120, 600), 0
        while when_running and time.monotonic() < limit:
            for run, current in all_runs(cluster.api).items():
                if run in when_running and current["status"] == "running":
                    futures.append(pool.submit(act, run, "abort", when_running.pop(run)))
                elif run in when_running and current["status"] in FINAL_STATUSES:
                    missed += when_running.pop(run) >= 0  # ended between two looks
            time.sleep(0.1)
        for future in futures:
            future.result()

    report = ledger.verify(cluster.api, deadline=choose(180, 900))
    time.sleep(1.0)  # every final status stays as it is
    later = all_runs(cluster.api)
    changed = [r for r in report.runs if later[r]["status"] != report.runs[r]["status"]]
    assert not changed, f"final statuses changed: {changed[:5]}"

    problems = []
    for run, given in answers.items():
        status = report.runs[run]["status"]
        if given.get("cancel") == 200 and given.get("abort") == 200:
            problems.append(f"{run}: both the cancel and the abort were accepted")
        if given.get("cancel") == 200 and status != "cancelled":
            problems.append(f"{run}: cancel accepted but the run ended {status}")
        if given.get("abort") == 200 and status not in ("aborted", "succeeded"):
            problems.append(f"{run}: abort accepted but the run ended {status}")
        if status == "aborted" and given.get("abort") != 200:
            problems.append(f"{run}: aborted without an accepted abort")
        if status == "cancelled" and given.get("cancel") != 200:
            problems.append(f"{run}: cancelled without an accepted cancel")
        for action, code in given.items():
            if code not in (200, 409):
                problems.append(f"{run}: {action} answered {code}")
    assert not problems, "\n".join(problems[:20])

    # Every aborted run's processes went within the limit.
    deadline = time.monotonic() + ABORT_LIMIT + 5
    while time.monotonic() < deadline and len(gone_after) < len(
        [r for r in aborted_at if r in ledger.pids()]
    ):
        time.sleep(0.1)
    done.set()
    watcher.join(timeout=10)
    started_and_aborted = [r for r in aborted_at if r in ledger.pids()]
    never_gone = [r for r in started_and_aborted if r not in gone_after]
    assert not never_gone, f"processes of aborted runs still alive: {never_gone[:5]}"
    slow = {r: t for r, t in gone_after.items() if t > ABORT_LIMIT}
    assert not slow, f"processes gone more than {ABORT_LIMIT:g}s after the abort: {slow}"

    figure("runs", count)
    figure("aborts meant for running runs that ended first", missed)
    figure("final statuses", dict(report.statuses))
    accepted = collections.Counter(
        f"{action} {code}" for given in answers.values() for action, code in given.items()
    )
    figure("API answers", dict(accepted))
    times = list(gone_after.values())
    figure("abort to processes gone, p50", round(percentile(times, 0.5), 2), "s")
    figure("abort to processes gone, max", round(max(times, default=0.0), 2), "s")
    assert report.statuses["cancelled"] > 0 and report.statuses["aborted"] > 0, report.statuses
