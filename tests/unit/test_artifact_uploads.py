"""orchestra.worker.uploads against an in-memory server that follows the upload protocol
(docs/protocol.md, "Artifacts") and misbehaves on demand: connections cut after the server took
a chunk (the client resumes from the 409's offset), chunks arriving damaged (sent again), the
upload forgotten (declared again), a file changed under the upload (hashed again), a 413 (the
server's reason), a 5xx that lasts (given up), and memory: never more than two chunks read."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestra.worker import artifacts, uploads
from orchestra.worker.artifacts import Collected
from orchestra.worker.uploads import CHUNK_BYTES, ServerLink, Uploader, UploadFailed, read_chunk

RUN = "0f0e0d0c-0b0a-4908-8706-050403020100"


class FakeServer:
    """The protocol's server side, in memory: uploads by path; `faults` a list of what to do
    to the next requests ("cut-after" stores the chunk and drops the answer, "cut-before"
    drops the request, "damage", "forget", "5xx", "413")."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[int, str, bytearray]] = {}  # path -> size, sha256, bytes
        self.stored: dict[str, bytes] = {}
        self.faults: list[str] = []
        self.requests: list[tuple[str, int]] = []  # (method, offset)
        self.junit: dict[str, Any] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.pop(0) if self.faults else None
        if fault == "cut-before":
            raise httpx.ConnectError("cut", request=request)
        if fault == "5xx":
            return httpx.Response(503, json={"detail": "busy"})
        if request.method == "POST":
            return self._declare(json.loads(request.content), fault)
        offset = int(request.url.params["offset"])
        self.requests.append(("PUT", offset))
        answer = self._put(request.url.params["path"], offset, request, fault)
        if fault == "cut-after":
            raise httpx.ReadError("cut", request=request)
        return answer

    def _declare(self, body: dict[str, Any], fault: str | None) -> httpx.Response:
        path, size, sha256 = body["path"], body["size"], body["sha256"]
        self.requests.append(("POST", 0))
        if fault == "413":
            return httpx.Response(413, json={"detail": f"{path} is over the limit of 1 byte"})
        if body.get("junit"):
            self.junit[path] = body["junit"]
        stored = self.stored.get(path)
        if stored is not None and hashlib.sha256(stored).hexdigest() == sha256:
            return httpx.Response(200, json={"offset": size})
        held = self.held.get(path)
        if held is None or held[1] != sha256:
            self.held[path] = (size, sha256, bytearray())
        return httpx.Response(200, json={"offset": len(self.held[path][2])})

    def _put(
        self, path: str, offset: int, request: httpx.Request, fault: str | None
    ) -> httpx.Response:
        held = self.held.get(path)
        if held is None or fault == "forget":
            self.held.pop(path, None)
            return httpx.Response(404, json={"detail": f"no upload of {path!r} in progress"})
        size, sha256, data = held
        if offset != len(data):
            return httpx.Response(409, json={"detail": "elsewhere", "offset": len(data)})
        chunk = request.content
        if (
            fault == "damage"
            or hashlib.sha256(chunk).hexdigest() != request.headers["x-chunk-sha256"]
        ):
            return httpx.Response(400, json={"detail": "the chunk's SHA-256 does not match"})
        data += chunk
        if len(data) < size:
            return httpx.Response(200, json={"offset": len(data)})
        del self.held[path]
        if hashlib.sha256(data).hexdigest() != sha256:
            return httpx.Response(422, json={"detail": "the file's SHA-256 does not match"})
        self.stored[path] = bytes(data)
        return httpx.Response(200, json={"offset": size, "complete": True})


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "BACKOFF_BASE", 0.0)
    monkeypatch.setattr(uploads, "BACKOFF_CAP", 0.0)


def item_of(path: Path) -> Collected:
    data = path.read_bytes()
    return Collected(path.name, len(data), hashlib.sha256(data).hexdigest())


async def upload(server: FakeServer, path: Path, item: Collected | None = None) -> Collected:
    link = ServerLink(["http://server.invalid"], "token", pause=0.0)
    transport = httpx.MockTransport(server.handle)
    item = item or item_of(path)
    with open(path, "rb") as handle:

        async def rehash() -> Collected:
            return item_of(path)

        async with httpx.AsyncClient(transport=transport) as client:
            return await Uploader(link, RUN, client).upload(
                item, read_chunk(handle.fileno(), item.chunks), rehash
            )


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * (CHUNK_BYTES * 3 // 256 + 1000))
    return path


async def test_a_file_goes_in_chunks_and_is_stored(big: Path) -> None:
    server = FakeServer()
    await upload(server, big)
    assert server.stored["big.bin"] == big.read_bytes()
    offsets = [o for m, o in server.requests if m == "PUT"]
    assert offsets == [0, CHUNK_BYTES, 2 * CHUNK_BYTES, 3 * CHUNK_BYTES]


async def test_cut_connections_resume_from_the_servers_offset(big: Path) -> None:
    server = FakeServer()
    server.faults = [None, "cut-after", "cut-before", None, "cut-after"]  # type: ignore[list-item]
    await upload(server, big)
    assert server.stored["big.bin"] == big.read_bytes()
    puts = [o for m, o in server.requests if m == "PUT"]
    # The chunk whose answer was lost is not sent twice in full: the 409 says where to go on.
    assert puts.count(0) == 1 and len(puts) <= 6


async def test_a_damaged_chunk_is_sent_again_and_a_forgotten_upload_declared_again(
    big: Path,
) -> None:
    server = FakeServer()
    server.faults = [None, "damage", None, "forget"]  # type: ignore[list-item]
    await upload(server, big)
    assert server.stored["big.bin"] == big.read_bytes()
    assert [m for m, _ in server.requests].count("POST") == 2


async def test_a_file_changed_under_the_upload_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "changing.bin"
    path.write_bytes(b"before" * 1000)
    stale = item_of(path)
    path.write_bytes(b"after!" * 1000)  # same size, other bytes: the whole hash is refused
    server = FakeServer()
    stored = await upload(server, path, stale)
    assert server.stored["changing.bin"] == b"after!" * 1000
    assert stored.sha256 == hashlib.sha256(b"after!" * 1000).hexdigest()


async def test_an_empty_file_is_one_empty_chunk(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    server = FakeServer()
    await upload(server, path)
    assert server.stored["empty.bin"] == b""
    await upload(server, path)  # stored already: declared, nothing more
    assert server.stored["empty.bin"] == b""


async def test_a_413_fails_with_the_servers_reason(big: Path) -> None:
    server = FakeServer()
    server.faults = ["413"]
    with pytest.raises(UploadFailed) as raised:
        await upload(server, big)
    assert raised.value.status == "failed"
    assert "big.bin is over the limit of 1 byte" in raised.value.reason


async def test_a_server_that_keeps_failing_is_given_up(big: Path) -> None:
    server = FakeServer()
    server.faults = ["5xx"] * uploads.MAX_SERVER_ERRORS
    with pytest.raises(UploadFailed) as raised:
        await upload(server, big)
    assert raised.value.status == "exception" and "kept failing" in raised.value.reason


async def test_junit_counts_go_with_the_declaration(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    path.write_bytes(b"<testsuite/>")
    item = item_of(path)
    item.junit = {"passed": 1, "failed": 0, "skipped": 0, "failures": []}
    server = FakeServer()
    await upload(server, path, item)
    assert server.junit == {"report.xml": item.junit}


def test_urls_as_given_become_the_bases_of_requests() -> None:
    assert uploads.http_base("ws://h:1/api/v1/workers/connect") == "http://h:1"
    assert uploads.http_base("https://h/") == "https://h"
    assert uploads.websocket_url("http://h:1") == "ws://h:1/api/v1/workers/connect"
    link = ServerLink(["http://a", "http://b"], "t", preferred=1)
    assert [link.base(n) for n in range(3)] == ["http://b", "http://a", "http://b"]


async def test_chunk_hashes_known_from_the_collection_are_sent_and_a_change_still_caught(
    big: Path,
) -> None:
    root = artifacts.open_workspace(big.parent)
    try:
        item = artifacts.take(root, big.name, None, False, [])
    finally:
        os.close(root)
    data = big.read_bytes()
    assert item.chunks == [
        hashlib.sha256(data[i : i + CHUNK_BYTES]).hexdigest()
        for i in range(0, len(data), CHUNK_BYTES)
    ]
    with open(big, "r+b") as handle:  # changed after it was collected
        handle.seek(CHUNK_BYTES + 5)
        handle.write(b"changed")
    server = FakeServer()
    stored = await upload(server, big, item)
    assert server.stored["big.bin"] == big.read_bytes()
    assert stored.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
