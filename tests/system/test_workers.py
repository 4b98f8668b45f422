"""Workers coming and going with real processes: disconnect requests, an agent killed with -9
and started again, and a worker away beyond its lease."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from tests.support.cluster import Cluster
from tests.support.jobs import numbered_lines, py
from tests.support.procfs import process_gone
from tests.support.waiting import holds_for, wait_until

# Appends the run's identifier to a file, prints numbered lines slowly (the first `pause` of
# them, then waits for a file to exist if one is named), and ends.
SLOW_LINES = """
    import os, pathlib, sys, time
    ids, go = pathlib.Path(sys.argv[1]), sys.argv[4]
    count, pause = int(sys.argv[2]), int(sys.argv[3])
    with open(ids, "a") as handle:
        handle.write(os.environ["ORCHESTRA_RUN"] + "\\n")
    for n in range(1, count + 1):
        if n == pause + 1 and go:
            deadline = time.monotonic() + 90
            while not pathlib.Path(go).exists():
                if time.monotonic() > deadline:
                    sys.exit("the go file never came")
                time.sleep(0.05)
        print(f"line {n}", flush=True)
        time.sleep(0.1)
"""
# Writes its pid, then runs until killed.
FOREVER = """
    import os, pathlib, sys, time
    pathlib.Path(sys.argv[1] + ".tmp").write_text(str(os.getpid()))
    pathlib.Path(sys.argv[1] + ".tmp").rename(sys.argv[1])
    print("running", flush=True)
    while True:
        time.sleep(0.1)
"""


def slow_lines(ids: Path, count: int, pause: int = 0, go: Path | None = None) -> list[str]:
    return py(SLOW_LINES, str(ids), str(count), str(pause), str(go or ""))


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_disconnect_idle_worker_exits_and_shows_inactive(cluster: Cluster) -> None:
    cluster.start()
    worker = cluster.start_worker("w1")

    response = cluster.api.request("POST", "/workers/w1/disconnect")
    assert response.status_code == 200, response.text

    wait_until(lambda: not worker.running(), 15, "the worker process to exit")
    assert worker.popen.returncode == 0
    cluster.api.wait_for_worker("w1", is_active=False)


def test_disconnect_busy_worker_finishes_its_run_then_exits(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    worker = cluster.start_worker("w1")
    ids, go = tmp_path / "ids", tmp_path / "go"
    cluster.api.put_job("j", [slow_lines(ids, 5, pause=2, go=go)])
    cluster.api.put_job("later", [py("print('later')")])
    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "running")
    wait_until(lambda: b"line 2\n" in cluster.api.log(run), 30, "the run's first lines")

    response = cluster.api.request("POST", "/workers/w1/disconnect")
    assert response.status_code == 200, response.text
    later = cluster.api.trigger("later")

    # The worker stays to finish what it runs, and takes nothing new.
    def finishing() -> bool:
        current = cluster.api.get_run(run)
        return worker.running() and current["status"] == "running"

    holds_for(finishing, 2.0, "the worker finishing its run")
    assert cluster.api.get_run(later)["status"] == "pending"
    go.touch()
    cluster.api.wait_for_status(run, "succeeded")
    wait_until(lambda: not worker.running(), 15, "the worker process to exit")
    assert worker.popen.returncode == 0
    assert cluster.api.log(run) == numbered_lines(1, 5).encode()
    cluster.api.wait_for_worker("w1", is_active=False)
    assert cluster.api.get_run(later)["status"] == "pending"


def test_worker_killed_and_restarted_completes_run_with_every_line_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    worker = cluster.start_worker("w1")
    ids = tmp_path / "ids"
    cluster.api.put_job("j", [slow_lines(ids, 40)])
    run = cluster.api.trigger("j")
    wait_until(lambda: b"line 10\n" in cluster.api.log(run), 30, "ten lines in the log")

    worker.kill()  # the agent alone: its spawner and the step keep running
    assert b"line 40\n" not in cluster.api.log(run), "the run ended before the kill"
    assert cluster.api.get_run(run)["status"] == "running"
    cluster.start_worker("w1")

    done = cluster.api.wait_for_status(run, "succeeded", timeout=60)
    assert done["worker"] == "w1"
    assert [(s["status"], s["exit_code"]) for s in done["steps"]] == [("succeeded", 0)]
    assert cluster.api.log(run) == numbered_lines(1, 40).encode()
    assert cluster.api.log(run, step=0) == numbered_lines(1, 40).encode()
    assert lines_of(ids) == [run["identifier"]]


def test_worker_lost_beyond_lease_ends_run_exception(cluster: Cluster, tmp_path: Path) -> None:
    lease = 4
    cluster.start(settings={"ORCHESTRA_LEASE": str(lease)})
    worker = cluster.start_worker("w1")
    pid_file = tmp_path / "step.pid"
    cluster.api.put_job("j", [py(FOREVER, str(pid_file)), py("print('never')")])
    run = cluster.api.trigger("j")
    step_pid = wait_until(lambda: pid_file.exists() and int(pid_file.read_text()), 30, "pid")
    cluster.api.wait_for_status(run, "running")
    spawner = cluster.spawner_of(worker)

    # The agent first (so that nothing reports the step's death), then its spawner and the step.
    worker.kill()
    os.kill(spawner, signal.SIGKILL)
    os.killpg(step_pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: process_gone(step_pid), 10, "the step to die")

    done = cluster.api.wait_for_status(run, "exception", timeout=lease + 5)
    elapsed = time.monotonic() - killed
    # The lease counts from the last time the worker was seen (up to a heartbeat before).
    assert elapsed >= lease - 1.5, f"given up after {elapsed:.1f}s, before the lease"
    assert "w1" in (done["reason"] or ""), done["reason"]
    assert [s["status"] for s in done["steps"]] == ["exception", "skipped"]
    assert b"never" not in cluster.api.log(run)
    cluster.api.wait_for_worker("w1", is_active=False)


def test_worker_back_after_lease_does_not_run_again(cluster: Cluster, tmp_path: Path) -> None:
    lease = 3
    cluster.start(settings={"ORCHESTRA_LEASE": str(lease)})
    worker = cluster.start_worker("w1")
    ids, go = tmp_path / "ids", tmp_path / "go"
    cluster.api.put_job("j", [slow_lines(ids, 4, pause=2, go=go)])
    cluster.api.put_job("probe", [py("print('probe')")])
    run = cluster.api.trigger("j")
    wait_until(lambda: b"line 2\n" in cluster.api.log(run), 30, "the run's first lines")

    worker.kill()  # the agent alone: the step goes on without it
    given_up = cluster.api.wait_for_status(run, "exception", timeout=lease + 10)
    go.touch()
    cluster.start_worker("w1")

    # The worker is back and working, and the run stays as the master left it.
    probe = cluster.api.trigger("probe")
    assert cluster.api.wait_for_status(probe, "succeeded")["worker"] == "w1"

    def unchanged() -> bool:
        current = cluster.api.get_run(run)
        return current["status"] == "exception" and current["reason"] == given_up["reason"]

    holds_for(unchanged, 2.0, "the given-up run stays exception")
    assert lines_of(ids) == [run["identifier"]]


def test_silent_connection_is_closed_after_three_heartbeats_and_chatty_one_is_not(
    cluster: Cluster,
) -> None:
    """Liveness without a timer per message: a connection that says nothing for three heartbeat
    intervals (1 s each here) is closed with a reason; one that heartbeats stays open."""
    cluster.start()

    async def scenario() -> tuple[tuple[int | None, str], float, bool]:
        headers = {"Authorization": f"Bearer {cluster.worker_token}"}
        url = cluster.url.replace("http://", "ws://", 1) + "/api/v1/workers/connect"
        silent = await connect(url, additional_headers=headers, ping_interval=None)
        chatty = await connect(url, additional_headers=headers, ping_interval=None)
        welcomed: dict[str, float] = {}
        for connection, name in ((silent, "raw-silent"), (chatty, "raw-chatty")):
            await connection.send(json.dumps(raw_hello(name)))
            welcome = json.loads(await asyncio.wait_for(connection.recv(), 30))
            assert welcome["type"] == "welcome"
            welcomed[name] = time.monotonic()
        # The silence counts from the silent one's welcome (the master's watch starts then),
        # not from the chatty one's, which a loaded machine can delay by half a second.
        started = welcomed["raw-silent"]

        async def closed() -> tuple[int | None, str]:
            try:
                while True:
                    await silent.recv()
            except ConnectionClosed as exc:
                return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")

        async def beat() -> None:
            while True:
                await chatty.send(json.dumps({"type": "heartbeat"}))
                await asyncio.sleep(0.5)

        beating = asyncio.create_task(beat())
        try:
            result = await asyncio.wait_for(closed(), 30)
            waited = time.monotonic() - started
            # The chatty one is still served a good while after the silent one was closed.
            await asyncio.sleep(2)
            chatty_open = chatty.state is State.OPEN and not beating.done()
        finally:
            beating.cancel()
            await chatty.close()
        return result, waited, chatty_open

    (code, reason), waited, chatty_open = asyncio.run(scenario())
    assert code == 4000 and "three heartbeats" in reason, (code, reason)
    assert 2.5 <= waited <= 8, f"closed after {waited:.1f}s (three intervals of 1 s)"
    assert chatty_open


def raw_hello(identifier: str) -> dict[str, object]:
    return {
        "type": "hello",
        "protocol": 1,
        "identifier": identifier,
        "display_name": identifier,
        "version": "test",
        "properties": {"kind": "raw"},
        "executors": 1,
        "runs": [],
    }


def dispatch_passes(cluster: Cluster) -> float:
    """The master's count of dispatch passes, from /metrics."""
    response = httpx.get(
        cluster.url + "/metrics",
        headers={"Authorization": f"Bearer {cluster.admin_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith("orchestra_dispatch_passes_total "):
            return float(line.split()[1])
    raise AssertionError("no orchestra_dispatch_passes_total in /metrics")


def test_workers_connecting_to_an_empty_queue_do_not_each_wake_the_dispatcher(
    cluster: Cluster,
) -> None:
    """A dispatch pass looks at every connected worker: a storm of registrations with nothing
    pending must not run one per worker (it made registering n workers O(n²)). A run already
    pending when a worker that can take it connects is still assigned to it."""
    cluster.start()
    cluster.api.put_project("p")
    cluster.api.put_job("special", [["true"]], properties={"kind": "special"})
    headers = {"Authorization": f"Bearer {cluster.worker_token}"}
    url = cluster.url.replace("http://", "ws://", 1) + "/api/v1/workers/connect"
    count = 40

    async def storm() -> float:
        connections = []
        started = time.monotonic()
        try:
            for n in range(count):
                connection = await connect(url, additional_headers=headers, ping_interval=None)
                connections.append(connection)
                await connection.send(json.dumps(raw_hello(f"raw-{n}")))
                welcome = json.loads(await asyncio.wait_for(connection.recv(), 30))
                assert welcome["type"] == "welcome"
            return time.monotonic() - started
        finally:
            for connection in connections:
                await connection.close()

    before = dispatch_passes(cluster)
    seconds = asyncio.run(storm())
    passes = dispatch_passes(cluster) - before
    # The dispatcher still looks once a second (runs due by time), and a few more for the
    # registrations that came before it found the queue empty; not once per worker.
    assert passes <= seconds + 6 < count, f"{passes:g} passes for {count} registrations"

    run = cluster.api.trigger("special")

    async def special() -> dict[str, object]:
        connection = await connect(url, additional_headers=headers, ping_interval=None)
        try:
            hello = {**raw_hello("raw-special"), "properties": {"kind": "special"}}
            await connection.send(json.dumps(hello))
            while True:
                message = json.loads(await asyncio.wait_for(connection.recv(), 30))
                if message["type"] == "assign":
                    return dict(message)
        finally:
            await connection.close()

    assert asyncio.run(special())["run"] == run["identifier"]
