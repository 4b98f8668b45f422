"""The server stopped in the middle of runs and started again on the same database."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.jobs import numbered_lines, py
from tests.support.processes import PYTHON, free_port
from tests.support.procfs import child_pids, process_gone
from tests.support.waiting import wait_until

# Appends the run's identifier to a file, prints ten lines, waits for a file, prints ten more.
TWO_HALVES = """
    import os, pathlib, sys, time
    ids, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    with open(ids, "a") as handle:
        handle.write(os.environ["ORCHESTRA_RUN"] + "\\n")
    for n in range(1, 11):
        print(f"line {n}", flush=True)
    deadline = time.monotonic() + 90
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("the go file never came")
        time.sleep(0.05)
    for n in range(11, 21):
        print(f"line {n}", flush=True)
        time.sleep(0.02)
"""


def test_cli_follow_goes_on_through_a_server_restart(cluster: Cluster, tmp_path: Path) -> None:
    """`orchestra run trigger --follow` in a CI step while the server is upgraded: the log
    comes whole and once, and the exit status is the run's."""
    port = free_port()
    cluster.start(port=port)
    cluster.start_worker("w1")
    ids, go = tmp_path / "ids", tmp_path / "go"
    cluster.api.put_job("j", [py(TWO_HALVES, str(ids), str(go))])
    argv = [PYTHON, "-m", "orchestra", "run", "trigger", "p", "j", "--follow"]
    out, err = tmp_path / "follow.out", tmp_path / "follow.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        follower = subprocess.Popen(argv, env=cluster.client_env(), stdout=stdout, stderr=stderr)
    try:
        first_half = numbered_lines(1, 10).encode()
        wait_until(lambda: out.read_bytes() == first_half, 30, "the first half followed")
        server = cluster.server
        assert server is not None
        server.stop()
        go.touch()  # the run finishes while no server is there
        cluster.start_server(port=port)
        assert follower.wait(timeout=90) == 0, err.read_text()
    finally:
        if follower.poll() is None:
            follower.kill()
    assert out.read_bytes() == numbered_lines(1, 20).encode()
    assert "reconnecting" in err.read_text()
    assert err.read_text().rstrip().endswith("succeeded")


def test_server_restarted_mid_runs_completes_them_once(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()  # the worker is given this URL, so the server comes back on it
    cluster.start(port=port)
    cluster.start_worker("w1", executors=2)
    ids, go = tmp_path / "ids", tmp_path / "go"
    cluster.api.put_job("j", [py(TWO_HALVES, str(ids), str(go))])
    runs = [cluster.api.trigger("j") for _ in range(3)]

    def two_started() -> bool:
        statuses = [cluster.api.get_run(r)["status"] for r in runs]
        logs = [cluster.api.log(r) for r in runs[:2]]
        return statuses == ["running", "running", "pending"] and all(
            log == numbered_lines(1, 10).encode() for log in logs
        )

    wait_until(two_started, 30, "two runs half done and one pending")
    first_server = cluster.server
    assert first_server is not None
    first_server.stop()
    assert not first_server.running()
    go.touch()  # the two running runs finish while no master is there
    cluster.start_server(port=port)

    done = [cluster.api.wait_for_status(r, "succeeded", timeout=90) for r in runs]

    assert [r["worker"] for r in done] == ["w1"] * 3
    for run in runs:
        assert cluster.api.log(run) == numbered_lines(1, 20).encode()
    assert sorted(ids.read_text().splitlines()) == sorted(r["identifier"] for r in runs)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_sigterm_stops_the_server_and_the_local_workers_it_started(cluster: Cluster) -> None:
    """`orchestra server --workers N` under a service manager (systemd, docker stop): SIGTERM
    ends the server and the worker processes it started, none left behind."""
    process, url = cluster.start_role("server-with-workers", arguments=["--workers", "1"])
    api = cluster.client(url)
    try:
        wait_until(lambda: (api.worker("local-1") or {}).get("is_active"), 60, "local-1 connected")
    finally:
        api.close()
    workers = child_pids(process.popen.pid)
    assert workers, "the server started no worker process"
    # The server runs on uvloop (installed with uvicorn[standard]), and SIGTERM still works.
    maps = Path(f"/proc/{process.popen.pid}/maps").read_text()
    assert "/uvloop/loop." in maps, "the server does not run on uvloop"
    process.popen.send_signal(signal.SIGTERM)
    process.popen.wait(timeout=30)
    wait_until(lambda: all(process_gone(pid) for pid in workers), 30, "the local worker to exit")
