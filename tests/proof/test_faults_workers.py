"""Worker agents killed outright: with the agent alone killed (and restarted) every run completes
once with every line; with the whole machine gone (agent, spawner, jobs) and never back, its runs
end `exception` at the lease."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.proof.cluster import ProofCluster, proof_job
from tests.proof.conftest import choose
from tests.proof.invariants import Expect, Ledger
from tests.support.procfs import group_alive
from tests.support.waiting import wait_until


@pytest.mark.parametrize("engine", choose(["sqlite"], ["sqlite", "postgresql"]), indirect=True)
def test_agent_killed_mid_runs_and_restarted_completes_every_run_once(
    cluster: ProofCluster, ledger: Ledger, figure
) -> None:
    """kill -9 of the agent alone (its spawner and the steps carry on) while runs are half way,
    then a restart: every run succeeds, none starts twice, every line arrives once."""
    runs, lines = choose(8, 20), 30
    cluster.start()
    worker = cluster.start_agent("w1", executors=4)
    cluster.api.put_job("j", [proof_job(ledger.journal, lines, 0.1)])
    expect = Expect(lines=lines, statuses=frozenset({"succeeded"}))
    triggered = [ledger.trigger(cluster.api, "j", expect) for _ in range(runs)]

    def half_way() -> bool:
        started = [r for r in triggered if b"line 5\n" in cluster.api.log(r)]
        return len(started) >= 2

    wait_until(half_way, 60, "two runs half way")
    worker.kill()
    in_flight = [r for r in triggered if cluster.api.get_run(r)["status"] == "running"]
    assert in_flight, "no run was running when the agent was killed"
    unfinished = [r for r in in_flight if f"line {lines}\n".encode() not in cluster.api.log(r)]
    assert unfinished, "every run had printed its last line before the kill"
    figure("runs running at the kill", len(in_flight))

    restarted = time.monotonic()
    cluster.start_agent("w1", executors=4)
    report = ledger.verify(cluster.api, deadline=120)
    figure("restart to all runs final", round(time.monotonic() - restarted, 1), "s")
    assert report.statuses == {"succeeded": runs}
    assert all(r["worker"] == "w1" for r in report.runs.values())


def test_worker_machine_lost_runs_end_exception_at_the_lease(
    cluster: ProofCluster, ledger: Ledger, figure
) -> None:
    """kill -9 of the agent, its spawner and every job process group (the machine is gone),
    never restarted: each run ends `exception` once the lease has passed, within 5 s of it."""
    lease = 4.0
    cluster.start(settings={"ORCHESTRA_LEASE": str(lease), "ORCHESTRA_HEARTBEAT": "1"})
    worker = cluster.start_agent("w1", executors=3)
    cluster.api.put_job("forever", [proof_job(ledger.journal, 3000, 0.1, child=True)])
    expect = Expect(lines=3000, statuses=frozenset({"exception"}))
    triggered = [ledger.trigger(cluster.api, "forever", expect)["identifier"] for _ in range(3)]
    for run in triggered:
        cluster.api.wait_for_status(run, "running")
    pids = wait_until(
        lambda: (found := ledger.pids()) and len(found) == 3 and found, 30, "the jobs' pids"
    )
    wait_until(
        lambda: all(b"line 3\n" in cluster.api.log(r) for r in triggered), 30, "output of all"
    )
    spawner = cluster.spawner_of(worker)

    worker.kill()
    os.kill(spawner, signal.SIGKILL)
    for pid, _child in pids.values():
        os.killpg(pid, signal.SIGKILL)
    killed = time.monotonic()
    for pid, _child in pids.values():
        wait_until(lambda pid=pid: not group_alive(pid), 10, f"job group {pid} to die")

    ended: dict[str, float] = {}

    def all_exception() -> bool:
        for run in triggered:
            if run not in ended and cluster.api.get_run(run)["status"] != "running":
                ended[run] = time.monotonic() - killed
        return len(ended) == len(triggered)

    wait_until(all_exception, lease + 15, "every run to be given up", interval=0.1)
    report = ledger.verify(cluster.api, deadline=10)
    for run in triggered:
        elapsed = ended[run]
        # The lease counts from the last time the worker was seen: up to a heartbeat before.
        assert elapsed >= lease - 1.5, f"run {run} given up after {elapsed:.1f}s, before the lease"
        assert elapsed <= lease + 5, f"run {run} given up {elapsed - lease:.1f}s after the lease"
        done = report.runs[run]
        assert "w1" in (done["reason"] or ""), done["reason"]
    lateness = max(ended.values()) - lease
    figure("lease expiry lateness (max over runs, from the kill)", round(lateness, 2), "s")
    cluster.api.wait_for_worker("w1", is_active=False)
