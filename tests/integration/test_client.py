"""orchestra.client against a real `orchestra server` with a real worker (sync and async):
trigger, wait, log, every page of a collection, apply, pipelines, ApiError; and its retries
against a tiny real HTTP server that answers 503 (or 502) before it answers 200."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestra.client import ApiError, AsyncClient, Client, RetryPolicy, Unreachable
from tests.support.cluster import Cluster
from tests.support.databases import ENGINES
from tests.support.jobs import py

FAST = RetryPolicy(retries=3, base_delay=0.01, max_delay=0.05)
GREET = py("import sys; print('hello', sys.argv[1])", "{parameters[name]}")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    """A server with project p, job `greet` (parameter name) and one worker."""
    cluster.start()
    parameters = [{"key": "name", "default": "world"}]
    cluster.api.put_job("greet", [GREET], parameters=parameters)
    cluster.start_worker("w1")
    return cluster


def test_client_triggers_waits_reads_the_log_and_every_page(running: Cluster) -> None:
    with Client(running.url, user="admin", token=running.admin_token, page_size=2) as client:
        run = client.trigger("p", "greet", {"name": "client"})
        assert run["status"] == "pending" and run["parameters"] == {"name": "client"}
        final = client.wait("p", run["identifier"], timeout=60)
        assert final["status"] == "succeeded", final
        assert client.log("p", run["identifier"]) == "hello client\n"
        more = [client.trigger("p", "greet")["identifier"] for _ in range(4)]
        listed = [r["identifier"] for r in client.runs("p")]  # three pages of two
        assert sorted(listed) == sorted([run["identifier"], *more])
        assert listed == [r["identifier"] for r in running.api.runs("p")]  # newest first
        assert [r["identifier"] for r in client.runs("p", status="succeeded")][-1] == (
            run["identifier"]
        )
        assert client.get("/projects/p")["identifier"] == "p"
        assert client.get("/api/v1/projects/p/jobs/greet")["identifier"] == "greet"


def test_client_errors_carry_the_status_and_the_api_detail(running: Cluster) -> None:
    with Client(running.url, token=running.admin_token) as client:  # a bearer token
        with pytest.raises(ApiError) as missing:
            client.get("/projects/nope")
        assert missing.value.status == 404
        assert "nope" in missing.value.detail
        with pytest.raises(ApiError) as invalid:
            client.trigger("p", "greet", {"undeclared": "x"})
        assert invalid.value.status in (400, 422) and "undeclared" in invalid.value.detail
        with pytest.raises(ApiError) as conflict:
            client.post("/projects", {"identifier": "p"})
        assert conflict.value.status == 409
    with (
        Client(running.url, user="admin", token="orc_wrong") as wrong,
        pytest.raises(ApiError) as bad,
    ):
        wrong.get("/projects")
    assert bad.value.status == 401
    with Client("http://127.0.0.1:1", token="x", retry=FAST) as nowhere:
        with pytest.raises(Unreachable) as unreachable:
            nowhere.get("/health")
    assert unreachable.value.status == 0 and "cannot reach" in str(unreachable.value)


def test_client_applies_a_file_or_a_mapping_and_runs_a_pipeline(
    running: Cluster, tmp_path: Path
) -> None:
    document = tmp_path / "project.yaml"
    document.write_text(
        "projects:\n"
        "  - identifier: q\n"
        "    jobs:\n"
        f"      - {{identifier: greet, steps: [{{command: {json.dumps(GREET)}}}],"
        " parameters: [{key: name, default: x}]}\n"
    )
    with Client(running.url, user="admin", token=running.admin_token) as client:
        created = client.apply(document)
        assert {"kind": "project", "identifier": "q", "action": "created"}.items() <= (
            created["changes"][0].items()
        )
        again = client.apply(str(document))
        assert all(change["action"] == "unchanged" for change in again["changes"])
        pipeline = {
            "identifier": "twice",
            "nodes": [
                {"identifier": "first", "job": "greet", "parameters": {"name": "one"}},
                {"identifier": "second", "job": "greet", "needs": ["first"]},
            ],
        }
        client.post("/projects/p/pipelines", pipeline)
        started = client.trigger_pipeline("p", "twice")
        final = client.wait_pipeline("p", started["identifier"], timeout=90)
        assert final["status"] == "succeeded", final
        assert [node["status"] for node in final["nodes"]] == ["succeeded", "succeeded"]


async def test_async_client_does_the_same(running: Cluster) -> None:
    async with AsyncClient(
        running.url, user="admin", token=running.admin_token, page_size=1
    ) as client:
        run = await client.trigger("p", "greet", {"name": "async"})
        final = await client.wait("p", run["identifier"], timeout=60)
        assert final["status"] == "succeeded", final
        assert await client.log("p", run["identifier"]) == "hello async\n"
        other = await client.trigger("p", "greet")
        listed = [r["identifier"] async for r in client.runs("p")]
        assert listed == [other["identifier"], run["identifier"]]
        chunks = [c async for c in client.stream_log("p", run["identifier"], offset=6)]
        assert b"".join(chunks) == b"async\n"
        with pytest.raises(ApiError) as missing:
            await client.get("/projects/p/runs/00000000-0000-0000-0000-000000000000")
        assert missing.value.status == 404


class FlakyServer:
    """A real HTTP server on 127.0.0.1 that answers `failures` times with `status`, then 200
    with {"ok": true}; it counts the requests per method."""

    def __init__(self, status: int, failures: int) -> None:
        self.status, self.failures = status, failures
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.requests.append(self.command)
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                failing = len(owner.requests) <= owner.failures
                body = json.dumps(
                    {"detail": "unavailable for now"} if failing else {"ok": True}
                ).encode()
                self.send_response(owner.status if failing else 200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky() -> Iterator[type[FlakyServer]]:
    servers: list[FlakyServer] = []

    class Tracked(FlakyServer):
        def __init__(self, status: int, failures: int) -> None:
            super().__init__(status, failures)
            servers.append(self)

    yield Tracked
    for server in servers:
        server.close()


@pytest.mark.parametrize("status", [502, 503, 504])
def test_client_retries_an_unavailable_answer_then_succeeds(
    flaky: type[FlakyServer], status: int
) -> None:
    server = flaky(status, failures=2)
    with Client(server.url, token="t", retry=FAST) as client:
        assert client.get("/health") == {"ok": True}
    assert server.requests == ["GET", "GET", "GET"]


async def test_async_client_retries_a_503_then_succeeds(flaky: type[FlakyServer]) -> None:
    server = flaky(503, failures=3)
    async with AsyncClient(server.url, token="t", retry=FAST) as client:
        assert await client.put("/x", {"a": 1}) == {"ok": True}
    assert server.requests == ["PUT"] * 4


def test_client_retries_are_bounded_and_a_post_is_not_repeated_after_a_502(
    flaky: type[FlakyServer],
) -> None:
    always = flaky(503, failures=100)
    with Client(always.url, token="t", retry=FAST) as client, pytest.raises(Unreachable) as gave_up:
        client.get("/health")
    assert gave_up.value.status == 503 and gave_up.value.detail == "unavailable for now"
    assert len(always.requests) == 1 + FAST.retries
    gateway = flaky(502, failures=1)  # a POST may have been done behind a 502: not repeated
    with Client(gateway.url, token="t", retry=FAST) as client, pytest.raises(ApiError) as failed:
        client.post("/projects/p/jobs/j/trigger")
    assert failed.value.status == 502 and gateway.requests == ["POST"]
    refused = flaky(503, failures=1)  # a 503 says nothing was done: a POST is tried again
    with Client(refused.url, token="t", retry=FAST) as client:
        assert client.post("/x") == {"ok": True}
    assert refused.requests == ["POST", "POST"]
