"""The network between a worker and its master cut, silently (packets dropped) or loudly
(connections reset, new ones refused): for less than the lease the run finishes and every line
arrives after the heal; for longer the run ends `exception`, and what the worker says about it
afterwards is refused and recorded.

The worker runs in a network namespace joined by a veth pair (see tests/proof/netns.py); this
machine has no iptables or nft, so the cut is made with routes (blackhole: drop; prohibit plus
`ss -K`: reset) rather than firewall rules.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.proof import netns
from tests.proof.cluster import ProofCluster, proof_job, root_required
from tests.proof.invariants import Expect, Ledger
from tests.support.waiting import holds_for, wait_until

WHY_NOT = root_required() or netns.unavailable()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no network namespaces: {WHY_NOT}")


@pytest.fixture
def namespace(cluster: ProofCluster) -> Iterator[netns.Namespace]:
    """A namespace for the worker; the cluster's processes are stopped before it goes."""
    built = netns.Namespace()
    try:
        yield built.create()
    finally:
        try:
            cluster.close()
        finally:
            built.delete()


def start(cluster: ProofCluster, space: netns.Namespace, lease: float) -> None:
    """A server on the host end of the veth pair and worker w1 inside the namespace."""
    settings = {"ORCHESTRA_LEASE": str(lease), "ORCHESTRA_HEARTBEAT": "1"}
    _server, url = cluster.start_role("server", "all", host=space.host_address, settings=settings)
    cluster.use(url).put_project("p")
    cluster.start_agent("w1", netns=space.name)


@pytest.mark.parametrize("mode", ["drop", "reset"])
def test_cut_shorter_than_lease_run_finishes_with_every_line(
    cluster: ProofCluster, ledger: Ledger, namespace: netns.Namespace, mode: str, figure
) -> None:
    """A cut of 5 s (longer than the master's three-heartbeat silence limit, so the connection
    is given up on both sides, but well within the 30 s lease): the job goes on printing, and
    after the heal the run succeeds with every line once, on the same worker, started once."""
    lines, outage = 80, 5.0
    start(cluster, namespace, lease=30)
    cluster.api.put_job("j", [proof_job(ledger.journal, lines, 0.1)])
    expect = Expect(lines=lines, statuses=frozenset({"succeeded"}))
    run = ledger.trigger(cluster.api, "j", expect)
    wait_until(lambda: b"line 10\n" in cluster.api.log(run), 30, "the run's first lines")

    namespace.cut(mode)
    try:
        cut_at = time.monotonic()
        # The master gives up on the silent connection after three heartbeats.
        cluster.api.wait_for_worker("w1", is_active=False, timeout=outage + 5)
        stored = cluster.api.log(run)
        time.sleep(max(0.0, outage - (time.monotonic() - cut_at)))  # the outage itself
        assert cluster.api.log(run) == stored, "output arrived through a cut link"
        assert cluster.api.get_run(run)["status"] == "running"
    finally:
        namespace.heal()
    healed = time.monotonic()
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    figure(f"{mode}: heal to run succeeded", round(time.monotonic() - healed, 2), "s")
    report = ledger.verify(cluster.api, deadline=10)
    assert report.runs[run["identifier"]]["worker"] == "w1"
    assert report.runs[run["identifier"]]["late_report"] is None
    cluster.api.wait_for_worker("w1", is_active=True, timeout=30)


def cut_beyond_lease(
    cluster: ProofCluster, ledger: Ledger, space: netns.Namespace, mode: str, figure
) -> tuple[dict, dict]:
    """A run cut off for the lease plus 6 s; (the run, the run as given up); the worker is back."""
    lease = 4.0
    start(cluster, space, lease=lease)
    cluster.api.put_job("j", [proof_job(ledger.journal, 40, 0.1)])
    run = ledger.trigger(cluster.api, "j", Expect(lines=40, statuses=frozenset({"exception"})))
    wait_until(lambda: b"line 3\n" in cluster.api.log(run), 30, "the run's first lines")
    space.cut(mode)
    try:
        cut_at = time.monotonic()
        given_up = cluster.api.wait_for_status(run, "exception", timeout=lease + 10)
        figure(
            f"{mode}: cut to run exception (lease {lease:g} s)",
            round(time.monotonic() - cut_at, 2),
            "s",
        )
        assert "w1" in given_up["reason"], given_up["reason"]
        # The job (4 s of output) ends on the worker during the outage.
        time.sleep(max(0.0, lease + 6 - (time.monotonic() - cut_at)))  # the outage itself
    finally:
        space.heal()
    cluster.api.wait_for_worker("w1", is_active=True, timeout=40)
    return run, given_up


@pytest.mark.parametrize("mode", ["drop", "reset"])
def test_cut_longer_than_lease_run_ends_exception_and_worker_takes_runs_again(
    cluster: ProofCluster, ledger: Ledger, namespace: netns.Namespace, mode: str, figure
) -> None:
    """A cut longer than the lease: the master ends the run `exception` at the lease; after the
    heal the worker's account of the run changes nothing (the run stays `exception`, its job
    started once) and the worker takes new runs."""
    run, given_up = cut_beyond_lease(cluster, ledger, namespace, mode, figure)
    cluster.api.put_job("probe", [proof_job(ledger.journal, 3)])
    probe = ledger.trigger(cluster.api, "probe", Expect(lines=3, statuses=frozenset({"succeeded"})))
    assert cluster.api.wait_for_status(probe, "succeeded", timeout=30)["worker"] == "w1"

    def unchanged() -> bool:
        current = cluster.api.get_run(run)
        return current["status"] == "exception" and current["reason"] == given_up["reason"]

    holds_for(unchanged, 1.0, "the given-up run stays exception")
    ledger.verify(cluster.api, deadline=10)


def test_cut_longer_than_lease_workers_outcome_is_recorded_as_late_report(
    cluster: ProofCluster, ledger: Ledger, namespace: netns.Namespace, figure
) -> None:
    """The worker's late report of the run (it succeeded on the worker during the cut) is
    refused and recorded on the run as `late_report`."""
    run, _given_up = cut_beyond_lease(cluster, ledger, namespace, "drop", figure)
    ledger.verify(cluster.api, deadline=10)
    late = wait_until(
        lambda: cluster.api.get_run(run)["late_report"], 10, "the late report to be recorded"
    )
    assert "succeeded" in late and "refused" in late, late
