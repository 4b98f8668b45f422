"""Artifacts through a real `orchestra server` on both engines, stored in a folder or in an
S3-compatible server started by the test: uploads as a worker makes them (16 MiB chunks, over
the API's ordinary body limit), a connection cut in the middle of a chunk and the upload resumed
from the offset the server holds, then `orchestra run artifacts` and `orchestra run download`
(all files, one file) byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from orchestra.protocol import messages as m
from orchestra.services.master_side import MasterSide
from orchestra.storage.schema import run as run_table
from tests.conftest import build_services
from tests.support.accounts import WORKER_USER
from tests.support.cluster import Cluster
from tests.support.processes import run_orchestra
from tests.support.s3 import CREDENTIALS, S3Server, s3_server  # noqa: F401  (a fixture)
from tests.support.waiting import wait_until

MIB = 1 << 20
CHUNK = 16 * MIB


@pytest.fixture(params=["file", "s3"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "file":
        return {"ORCHESTRA_ARTIFACTS_URL": f"file://{tmp_path / 'artifacts'}"}
    s3: S3Server = request.getfixturevalue("s3_server")
    return {
        "ORCHESTRA_ARTIFACTS_URL": f"s3://{s3.new_bucket()}/kept",
        "ORCHESTRA_S3_ENDPOINT_URL": s3.endpoint_url,
        **CREDENTIALS,
    }


async def running_run(cluster: Cluster) -> str:
    """A run of job j, running on worker `fake` (of the workers' user) that never connects."""
    services = build_services(cluster.database_url, cluster.directory / "direct")
    try:
        hello = m.Hello(
            protocol=m.PROTOCOL_VERSION,
            identifier="fake",
            display_name="fake",
            version="test",
            properties={"never": "matched"},
            executors=1,
        )
        await MasterSide.build(services, "test").registry.register(WORKER_USER, hello)
        run = await services.runs.trigger("p", "j", {}, {"type": "api", "user": "admin"})
        async with services.db.transaction() as conn:
            await conn.execute(
                sa.update(run_table)
                .where(run_table.c.identifier == run.identifier)
                .values(status="running", worker="fake", start_date=services.clock.now())
            )
        return run.identifier
    finally:
        await services.close()


def upload(http: httpx.Client, run: str, path: str, data: bytes, start: int = 0) -> None:
    """Send `data` from `start` in 16 MiB chunks (its upload declared before)."""
    offset = start
    while True:
        chunk = data[offset : offset + CHUNK]
        answer = http.put(
            f"/artifact-uploads/{run}",
            params={"path": path, "offset": offset},
            content=chunk,
            headers={"X-Chunk-SHA256": hashlib.sha256(chunk).hexdigest()},
        )
        assert answer.status_code == 200, answer.text
        offset = answer.json()["offset"]
        if answer.json().get("complete"):
            assert offset == len(data)
            return


def cut_chunk(url: str, token: str, run: str, path: str, offset: int, chunk: bytes) -> None:
    """Send a chunk's head and half its bytes, then drop the connection."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname or "127.0.0.1", where.port or 80)) as sock:
        head = (
            f"PUT /api/v1/artifact-uploads/{run}?path={path}&offset={offset} HTTP/1.1\r\n"
            f"Host: {where.netloc}\r\nAuthorization: Bearer {token}\r\n"
            f"X-Chunk-SHA256: {hashlib.sha256(chunk).hexdigest()}\r\n"
            f"Content-Length: {len(chunk)}\r\n\r\n"
        )
        sock.sendall(head.encode() + chunk[: len(chunk) // 2])


def test_artifacts_through_a_real_server_and_the_cli(
    cluster: Cluster, store_env: dict[str, str], tmp_path: Path
) -> None:
    cluster.start(store_env)
    cluster.api.put_job("j", [["true"]], artifacts=[{"path": "dist/**"}])
    run = asyncio.run(running_run(cluster))
    big = os.urandom(40 * MIB + 777)
    small = b"hello, artifacts\n"
    http = httpx.Client(
        base_url=cluster.url + "/api/v1",
        headers={"Authorization": f"Bearer {cluster.worker_token}"},
        timeout=60,
    )
    with http:
        declared: dict[str, Any] = {
            "path": "dist/app.bin",
            "size": len(big),
            "sha256": hashlib.sha256(big).hexdigest(),
        }
        assert http.post(f"/artifact-uploads/{run}", json=declared).json()["offset"] == 0
        first = http.put(
            f"/artifact-uploads/{run}",
            params={"path": "dist/app.bin", "offset": 0},
            content=big[:CHUNK],
            headers={"X-Chunk-SHA256": hashlib.sha256(big[:CHUNK]).hexdigest()},
        )
        assert first.json()["offset"] == CHUNK
        cut_chunk(
            cluster.url, cluster.worker_token, run, "dist/app.bin", CHUNK, big[CHUNK : 2 * CHUNK]
        )

        # The server drops the cut chunk; a new POST says where to resume.
        def resumes_at_the_first_chunk() -> bool:
            answer = http.post(f"/artifact-uploads/{run}", json=declared)
            return bool(answer.json()["offset"] == CHUNK)

        wait_until(resumes_at_the_first_chunk, 30, "the cut chunk to be dropped")
        upload(http, run, "dist/app.bin", big, start=CHUNK)
        small_declared = {
            "path": "dist/docs/readme.txt",
            "size": len(small),
            "sha256": hashlib.sha256(small).hexdigest(),
        }
        assert http.post(f"/artifact-uploads/{run}", json=small_declared).json()["offset"] == 0
        upload(http, run, "dist/docs/readme.txt", small)

    env = cluster.client_env()
    listed = run_orchestra(["run", "artifacts", "p", run, "-o", "json"], env)
    assert listed.returncode == 0, listed.stderr
    api_listing = list(cluster.api.pages(f"/projects/p/runs/{run}/artifacts"))
    assert json.loads(listed.stdout) == api_listing
    table = run_orchestra(["run", "artifacts", "p", run[:8]], env)
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["PATH", "SIZE", "SHA256"]
    assert [r.split()[0] for r in rows] == ["dist/app.bin", "dist/docs/readme.txt"]

    everything = tmp_path / "everything"
    done = run_orchestra(["run", "download", "p", run, "--output", str(everything)], env)
    assert done.returncode == 0, done.stderr
    assert (everything / "dist" / "app.bin").read_bytes() == big
    assert (everything / "dist" / "docs" / "readme.txt").read_bytes() == small
    one = tmp_path / "one"
    done = run_orchestra(
        ["run", "download", "p", run, "dist/docs/readme.txt", "--output", str(one)], env
    )
    assert done.returncode == 0, done.stderr
    assert [p.name for p in one.rglob("*") if p.is_file()] == ["readme.txt"]
    missing = run_orchestra(["run", "download", "p", run, "dist/none", "--output", str(one)], env)
    assert missing.returncode == 1 and "404" in missing.stderr

    # Byte ranges from the real server, and the space the project's artifacts take.
    ranged = cluster.api.request(
        "GET",
        f"/projects/p/runs/{run}/artifacts/dist/app.bin",
        206,
        headers={"Range": f"bytes={CHUNK - 5}-{CHUNK + 4}"},
    )
    assert ranged.content == big[CHUNK - 5 : CHUNK + 5]
    project = cluster.api.request("GET", "/projects/p", 200).json()
    assert project["artifacts_size"] == len(big) + len(small)
