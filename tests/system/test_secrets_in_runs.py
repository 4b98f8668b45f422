"""Project secrets in runs, with a real server and real workers: a step gets a secret as an
argument and through its job's environment, the log shows it masked, and the value is nowhere
on the worker's disk nor in the database; a run naming a missing secret ends `exception` and
is never sent; the master masks the output of a worker that does not."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.proof import rawworker
from tests.support.cluster import Cluster
from tests.support.jobs import WAIT_FOR_FILE
from tests.support.waiting import wait_until

TOKEN = "tok-9f8e7d6c5b4a-secret"
PASSWORD = "pw-0a1b2c3d4e-param"
# A sandboxed step has a private /tmp: the interpreter by its real path works either way.
PYTHON = os.path.realpath(sys.executable)
SHOW = """
import hashlib, os, sys
def digest(value):
    return hashlib.sha256(value.encode()).hexdigest()
print("argument:", sys.argv[1])
print("environment:", os.environ["API_TOKEN"])
print("parameter:", sys.argv[2])
print("digests:", digest(sys.argv[1]), digest(os.environ["API_TOKEN"]), digest(sys.argv[2]))
print("plain:", os.environ["PLAIN"])
print("reserved:", os.environ["ORCHESTRA_RUN"])
print("-" * 100)  # past what the worker holds back while a step runs (a secret's length)
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def set_secret(cluster: Cluster, name: str, value: str) -> None:
    cluster.api.request("PUT", f"/projects/p/secrets/{name}", (200, 201), json={"value": value})


def files_bytes(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def database_bytes(url: str) -> bytes:
    """Everything the database holds: SQLite's file and its WAL, or every value of every
    table of PostgreSQL (bytes as they are, the rest as text)."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    parts: list[bytes] = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value))
                    else:
                        parts.append(json.dumps(value, default=str).encode())
    return b"\n".join(parts)


def test_a_step_gets_its_secrets_as_arguments_and_variables_and_they_are_masked_everywhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    set_secret(cluster, "TOKEN", TOKEN)
    release = tmp_path / "release"
    show = SHOW + textwrap.dedent(WAIT_FOR_FILE).replace("sys.argv[1]", "sys.argv[3]")
    command = [PYTHON, "-u", "-c", show.replace("{", "{{").replace("}", "}}")]
    cluster.api.put_job(
        "j",
        [[*command, "{secrets[TOKEN]}", "{parameters[password]}", str(release)]],
        parameters=[{"key": "password", "secret": True}],
        environment={"API_TOKEN": "{secrets[TOKEN]}", "PLAIN": "run {run_identifier}"},
    )
    cluster.start_worker("w1")

    run = cluster.api.trigger("j", parameters={"password": PASSWORD})
    wait_until(lambda: b"reserved:" in cluster.api.log(run), 30, "the step's output")
    # While the step runs, its journal is on the worker's disk: no value there in clear.
    on_disk = files_bytes(cluster.worker_dir("w1"))
    names = {path.name for path in on_disk}
    assert {"assignment.json", "events.jsonl", "step-0.log"} <= names, names
    for value in (TOKEN, PASSWORD):
        found = [path for path, data in on_disk.items() if value.encode() in data]
        assert found == [], f"{value} on the worker's disk in {found}"
    release.touch()
    done = cluster.api.wait_for_status(run, "succeeded")

    log = cluster.api.log(run).decode()
    hidden = "*" * len(TOKEN)
    assert f"argument: {hidden}\n" in log
    assert f"environment: {hidden}\n" in log
    assert f"parameter: {'*' * len(PASSWORD)}\n" in log
    # The step had the values themselves (their digests say so without showing them).
    assert f"digests: {digest(TOKEN)} {digest(TOKEN)} {digest(PASSWORD)}\n" in log
    assert f"plain: run {done['identifier']}\n" in log
    assert f"reserved: {done['identifier']}\n" in log
    assert TOKEN not in log and PASSWORD not in log
    stored = database_bytes(cluster.database_url)
    assert TOKEN.encode() not in stored and PASSWORD.encode() not in stored
    # Nor in what the server and the worker wrote to their own logs (stdout and stderr).
    process_logs = {path.name: path.read_bytes() for path in cluster.directory.glob("*.log")}
    assert process_logs, "the processes' logs"
    for value in (TOKEN, PASSWORD):
        found = [name for name, data in process_logs.items() if value.encode() in data]
        assert found == [], f"{value} in the processes' logs {found}"


def test_a_sandboxed_step_gets_its_variables_too(cluster: Cluster) -> None:
    cluster.start()
    set_secret(cluster, "TOKEN", TOKEN)
    code = "import hashlib, os; print(hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest())"
    cluster.api.put_job(
        "j",
        [[PYTHON, "-c", code.replace("{", "{{").replace("}", "}}"), "{secrets[TOKEN]}"]],
        environment={"API_TOKEN": "{secrets[TOKEN]}"},
        sandbox={"network": False},
    )
    cluster.start_worker("w1")

    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "succeeded")

    assert cluster.api.log(run) == f"{digest(TOKEN)}\n".encode()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def test_a_missing_secret_ends_the_run_unsent_and_the_master_masks_a_worker_that_does_not(
    cluster: Cluster,
) -> None:
    cluster.start()
    set_secret(cluster, "TOKEN", TOKEN)
    cluster.api.put_job("missing", [["echo", "{secrets[NOPE]}"]])
    cluster.api.put_job(
        "uses", [["echo", "{secrets[TOKEN]}"]], environment={"API_TOKEN": "{secrets[TOKEN]}"}
    )
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        connection = await rawworker.open_connection(cluster.url, cluster.worker_token)
        await rawworker.welcomed(connection, "raw-w")

        async def read() -> None:
            while True:
                received.append(json.loads(await connection.recv()))

        async def beat() -> None:
            while True:
                await connection.send(rawworker.HEARTBEAT)
                await asyncio.sleep(0.5)

        tasks = [asyncio.create_task(read()), asyncio.create_task(beat())]
        try:
            await asyncio.to_thread(cluster.wait_for_workers, ["raw-w"])
            missing = await asyncio.to_thread(cluster.api.trigger, "missing")
            ended = await asyncio.to_thread(cluster.api.wait_for_status, missing, "exception")
            assert ended["reason"] == "secret NOPE is not set in project p", ended
            assert [s["status"] for s in ended["steps"]] == ["skipped"]
            assert ended["worker"] == "raw-w"  # it was claimed for this worker, and not sent

            uses = await asyncio.to_thread(cluster.api.trigger, "uses")
            await asyncio.to_thread(
                wait_until, lambda: any(m["type"] == "assign" for m in received), 30, "an assign"
            )
            (assign,) = [m for m in received if m["type"] == "assign"]
            assert assign["run"] == uses["identifier"]  # the missing one never came
            assert assign["secret_values"] == {"TOKEN": TOKEN}
            assert assign["secrets"] == [TOKEN]
            assert assign["environment"] == {"API_TOKEN": "{secrets[TOKEN]}"}
            assert assign["steps"][0]["command"] == ["echo", "{secrets[TOKEN]}"]

            data = f"unmasked {TOKEN}\n".encode()
            events = [
                {"kind": "step_started", "sequence": 1, "step": 0, "date": _now()},
                {
                    "kind": "output",
                    "sequence": 2,
                    "step": 0,
                    "offset": 0,
                    "data": base64.b64encode(data).decode(),
                },
                {
                    "kind": "step_ended",
                    "sequence": 3,
                    "step": 0,
                    "status": "succeeded",
                    "exit_code": 0,
                    "date": _now(),
                },
                {"kind": "run_ended", "sequence": 4, "status": "succeeded", "date": _now()},
            ]
            report = {"type": "report", "run": uses["identifier"], "events": events}
            await connection.send(json.dumps(report))
            await asyncio.to_thread(cluster.api.wait_for_status, uses, "succeeded")
            log = await asyncio.to_thread(cluster.api.log, uses)
            assert log == f"unmasked {'*' * len(TOKEN)}\n".encode()
        finally:
            for task in tasks:
                task.cancel()
            await connection.close()

    asyncio.run(scenario())
    assert TOKEN.encode() not in database_bytes(cluster.database_url)
