"""Cancel and abort with real processes: a cancelled run never starts, an aborted run's process
and its children are gone, and both answer 409 where the contract says so."""

from __future__ import annotations

from pathlib import Path

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.procfs import process_gone
from tests.support.waiting import holds_for, wait_until

# A step that starts a child in its own process group, writes both pids, then loops forever.
# With `ignore_term`, both ignore SIGTERM, so that only the SIGKILL after the grace ends them.
FAMILY = """
    import os, pathlib, signal, subprocess, sys, time
    directory, ignore_term = pathlib.Path(sys.argv[1]), sys.argv[2] == "ignore"
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    loop = "import signal, sys, time\\n"
    if ignore_term:
        loop += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    loop += "while True: time.sleep(0.1)\\n"
    child = subprocess.Popen([sys.executable, "-c", loop])
    (directory / "child.tmp").write_text(str(child.pid))
    (directory / "child.tmp").rename(directory / "child.pid")
    (directory / "parent.tmp").write_text(str(os.getpid()))
    (directory / "parent.tmp").rename(directory / "parent.pid")
    print("family started", flush=True)
    while True:
        time.sleep(0.1)
"""
# How long a cancelled run is watched not to start while a worker is there to take it.
NEVER_STARTS_WINDOW = 2.0


def read_pid(path: Path) -> int | None:
    return int(path.read_text()) if path.exists() else None


def start_family(cluster: Cluster, directory: Path, ignore_term: bool) -> tuple[dict, int, int]:
    """A running run of the FAMILY job; the run and the pids of its process and its child."""
    directory.mkdir()
    mode = "ignore" if ignore_term else "default"
    cluster.api.put_job("family", [py(FAMILY, str(directory), mode), py("print('never')")])
    run = cluster.api.trigger("family")
    child = wait_until(lambda: read_pid(directory / "child.pid"), 30, "the child's pid")
    parent = wait_until(lambda: read_pid(directory / "parent.pid"), 30, "the step's pid")
    cluster.api.wait_for_status(run, "running")
    return run, parent, child


def test_cancel_pending_run_never_starts(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    ran = tmp_path / "ran"
    touch = "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()"
    cluster.api.put_job("j", [py(touch, str(ran))])
    cluster.api.put_job("other", [py("print('other ran')")])

    run = cluster.api.trigger("j")
    response = cluster.api.cancel(run)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    cluster.start_worker("w1")
    # The worker takes runs (a later one runs) while the cancelled one stays as it is.
    cluster.api.wait_for_status(cluster.api.trigger("other"), "succeeded")

    def untouched() -> bool:
        current = cluster.api.get_run(run)
        return (
            current["status"] == "cancelled"
            and current["start_date"] is None
            and current["worker"] is None
        )

    holds_for(untouched, NEVER_STARTS_WINDOW, "the cancelled run stays cancelled")
    assert not ran.exists()
    assert [s["status"] for s in cluster.api.get_run(run)["steps"]] == ["skipped"]
    assert cluster.api.cancel(run).status_code == 409


def test_cancel_running_run_is_conflict(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w1")
    run, _parent, _child = start_family(cluster, tmp_path / "family", ignore_term=False)

    response = cluster.api.cancel(run)

    assert response.status_code == 409, response.text
    assert response.json()["detail"]
    assert cluster.api.get_run(run)["status"] == "running"
    assert cluster.api.abort(run).status_code == 200
    cluster.api.wait_for_status(run, "aborted")


def test_abort_pending_run_is_conflict(cluster: Cluster) -> None:
    cluster.start()
    cluster.api.put_job("j", [py("print('never')")])
    run = cluster.api.trigger("j")

    response = cluster.api.abort(run)

    assert response.status_code == 409, response.text
    assert cluster.api.get_run(run)["status"] == "pending"


def test_abort_running_run_ends_process_and_children(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w1")
    run, parent, child = start_family(cluster, tmp_path / "family", ignore_term=False)

    response = cluster.api.abort(run)
    assert response.status_code == 200, response.text

    done = cluster.api.wait_for_status(run, "aborted", timeout=20)
    assert [s["status"] for s in done["steps"]] == ["aborted", "skipped"]
    wait_until(lambda: process_gone(parent), 15, f"the step's process {parent} to end")
    wait_until(lambda: process_gone(child), 15, f"the step's child {child} to end")
    assert b"never" not in cluster.api.log(run)


def test_abort_kills_processes_that_ignore_sigterm(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start(settings={"ORCHESTRA_ABORT_GRACE": "1"})
    cluster.start_worker("w1")
    run, parent, child = start_family(cluster, tmp_path / "family", ignore_term=True)

    assert cluster.api.abort(run).status_code == 200

    cluster.api.wait_for_status(run, "aborted", timeout=20)
    wait_until(lambda: process_gone(parent), 15, f"the step's process {parent} to end")
    wait_until(lambda: process_gone(child), 15, f"the step's child {child} to end")


def test_abort_and_cancel_of_finished_run_are_conflicts(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job("j", [py("print('done')")])
    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "succeeded")

    abort = cluster.api.abort(run)
    cancel = cluster.api.cancel(run)

    assert abort.status_code == 409, abort.text
    assert cancel.status_code == 409, cancel.text
    assert cluster.api.get_run(run)["status"] == "succeeded"
