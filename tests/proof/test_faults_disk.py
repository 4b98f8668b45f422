"""A worker's disk full: its data directory is a 40 MiB tmpfs. A run that fills it fails with a
reason naming the disk; the agent stays up and connected; while the disk is full it takes no new
run (a triggered run stays pending and says why); once there is room again it takes runs."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proof.cluster import ProofCluster, proof_job, root_required
from tests.proof.invariants import Expect, Ledger
from tests.support.jobs import py
from tests.support.waiting import holds_for, wait_until

WHY_NOT = root_required()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"cannot mount a tmpfs: {WHY_NOT}")

# Prints numbered lines of 1 KiB until the write fails (the step's output is on the full disk).
FILL_OUTPUT = """
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (os.environ["ORCHESTRA_RUN"] + " 0 0\\n").encode())
    for n in range(1, 100_001):
        sys.stdout.write(f"line {n} " + "x" * 1000 + "\\n")
    sys.stdout.flush()
"""
# Writes a file into its workspace until the disk refuses more.
FILL_WORKSPACE = """
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (os.environ["ORCHESTRA_RUN"] + " 0 0\\n").encode())
    block = b"x" * (1 << 20)
    with open(os.path.join(sys.argv[2], "filler"), "wb") as handle:
        while True:
            handle.write(block)
            handle.flush()
"""


@pytest.fixture
def small_disk(cluster: ProofCluster, tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs; unmounted after the cluster's processes are stopped."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        try:
            cluster.close()
        finally:
            done = subprocess.run(["umount", str(mount_point)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def start(cluster: ProofCluster, ledger: Ledger, disk: Path):
    cluster.start()
    worker = cluster.start_agent("w1", data_dir=disk)
    cluster.api.put_job("fill-output", [py(FILL_OUTPUT, str(ledger.journal))])
    cluster.api.put_job("fill-workspace", [py(FILL_WORKSPACE, str(ledger.journal), "{workspace}")])
    cluster.api.put_job("j", [proof_job(ledger.journal, 5)])
    return worker


FAILS = Expect(lines=100_000, statuses=frozenset({"failed"}))
SUCCEEDS = Expect(lines=5, statuses=frozenset({"succeeded"}))
FULL = "takes no new runs: the worker's disk is full"


def test_disk_full_fails_the_run_with_the_reason_and_worker_pauses_until_space_is_back(
    cluster: ProofCluster, ledger: Ledger, small_disk: Path, figure
) -> None:
    worker = start(cluster, ledger, small_disk)
    server = cluster.server
    assert server is not None

    # 1. The output fills the disk: the run fails, saying why, and the agent carries on; the
    # failed run's journal, once acknowledged, is removed, which gives the room back.
    filled = ledger.trigger(cluster.api, "fill-output", FAILS)
    done = cluster.api.wait_for_status(filled, "failed", timeout=60)
    assert "disk" in (done["reason"] or ""), done
    stored = cluster.api.log(filled)
    assert stored.startswith(b"line 1 x"), stored[:100]
    figure("output stored before the disk filled", len(stored) // 1024, "KiB")
    assert worker.running(), f"the agent died:\n{worker.tail()}"
    after = ledger.trigger(cluster.api, "j", SUCCEEDS)
    cluster.api.wait_for_status(after, "succeeded", timeout=60)

    # 2. A file in the workspace fills the disk and stays: once the worker has told its master
    # (it checks its disk every heartbeat), it takes no new run while the file is there.
    seen = server.log().count(FULL)
    filler = ledger.trigger(cluster.api, "fill-workspace", FAILS)
    done = cluster.api.wait_for_status(filler, "failed", timeout=60)
    assert "disk" in (done["reason"] or ""), done
    wait_until(lambda: server.log().count(FULL) > seen, 10, "the worker to say its disk is full")
    full_since = time.monotonic()
    waiting = ledger.trigger(cluster.api, "j", SUCCEEDS)

    def pending_and_up() -> bool:
        current = cluster.api.get_run(waiting)
        worker_record = cluster.api.worker("w1")
        return (
            current["status"] == "pending"
            and bool(current["waiting_reason"])
            and worker.running()
            and worker_record is not None
            and worker_record["is_active"] is True
        )

    holds_for(pending_and_up, 3.0, "the run waiting while the disk is full")
    reason = cluster.api.get_run(waiting)["waiting_reason"]
    figure("waiting_reason while the disk is full", reason)
    files = list(small_disk.glob("workspaces/**/filler"))
    assert files, "the filler file is not in the workspace"
    for path in files:
        path.unlink()
    freed = time.monotonic()
    cluster.api.wait_for_status(waiting, "succeeded", timeout=60)
    figure("space back to the waiting run succeeded", round(time.monotonic() - freed, 2), "s")
    figure("disk full period observed", round(freed - full_since, 2), "s")
    assert worker.running()
    ledger.verify(cluster.api, deadline=30)
    with contextlib.suppress(FileNotFoundError):
        assert not any(small_disk.joinpath("runs").iterdir()), "journals left behind"
    wait_until(lambda: cluster.api.worker("w1")["is_active"], 10, "the worker active")


def test_run_triggered_just_after_the_disk_filled_is_not_given_to_the_full_worker(
    cluster: ProofCluster, ledger: Ledger, small_disk: Path
) -> None:
    start(cluster, ledger, small_disk)
    filler = ledger.trigger(cluster.api, "fill-workspace", FAILS)
    cluster.api.wait_for_status(filler, "failed", timeout=60)
    waiting = ledger.trigger(cluster.api, "j", Expect(lines=5))
    try:
        holds_for(
            lambda: cluster.api.get_run(waiting)["status"] == "pending",
            2.0,
            "the run triggered on a full disk waiting",
        )
    finally:
        for path in small_disk.glob("workspaces/**/filler"):
            path.unlink()
        ledger.verify(cluster.api, deadline=30)
