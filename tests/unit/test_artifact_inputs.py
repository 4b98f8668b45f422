"""orchestra.worker.inputs: a pipeline node's needs' files put in its workspace, downloaded from
an in-memory server: at their paths, checked against their SHA-256, resumed with a Range request
after a cut, and never written through a symbolic link in the way."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from orchestra.protocol.messages import AssignedInput
from orchestra.worker import inputs, uploads
from orchestra.worker.inputs import InputFailed, fetch_inputs
from orchestra.worker.uploads import ServerLink

RUN = "0f0e0d0c-0b0a-4908-8706-050403020100"
FILES = {"dist/app.bin": bytes(range(256)) * 5000, "notes.txt": b"notes", "empty": b""}


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "BACKOFF_BASE", 0.0)
    monkeypatch.setattr(uploads, "BACKOFF_CAP", 0.0)


def assigned(files: dict[str, bytes]) -> list[AssignedInput]:
    return [
        AssignedInput(
            run=RUN, project="p", path=p, size=len(d), sha256=hashlib.sha256(d).hexdigest()
        )
        for p, d in files.items()
    ]


class Server:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_once: set[str] = set()  # paths whose first answer stops half way
        self.ranges: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        prefix = f"/api/v1/projects/p/runs/{RUN}/artifacts/"
        path = request.url.path.removeprefix(prefix)
        data = self.files.get(path)
        if data is None:
            return httpx.Response(404, json={"detail": "no artifact"})
        wanted = request.headers.get("range")
        if wanted:
            self.ranges.append(wanted)
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            return httpx.Response(206, content=data[start:])
        if path in self.cut_once:
            self.cut_once.discard(path)
            return httpx.Response(200, content=data[: len(data) // 2])
        return httpx.Response(200, content=data)


async def fetch(tmp_path: Path, server: Server, files: dict[str, bytes]) -> str:
    link = ServerLink(["http://server.invalid"], "token", pause=0.0)
    transport = httpx.MockTransport(server.handle)
    original = ServerLink.client

    def client(self: ServerLink) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport)

    ServerLink.client = client  # type: ignore[method-assign]
    try:
        return await fetch_inputs(tmp_path / "ws", assigned(files), link, None)
    finally:
        ServerLink.client = original  # type: ignore[method-assign]


async def test_the_files_land_at_their_paths(tmp_path: Path) -> None:
    said = await fetch(tmp_path, Server(FILES), FILES)
    for path, data in FILES.items():
        assert (tmp_path / "ws" / path).read_bytes() == data
    assert said.startswith("fetched 3 artifacts")
    assert sorted(os.listdir(tmp_path / "ws")) == ["dist", "empty", "notes.txt"]  # no leftovers


async def test_a_cut_download_resumes_with_a_range(tmp_path: Path) -> None:
    server = Server(FILES)
    server.cut_once.add("dist/app.bin")
    await fetch(tmp_path, server, FILES)
    assert (tmp_path / "ws" / "dist/app.bin").read_bytes() == FILES["dist/app.bin"]
    assert server.ranges == [f"bytes={len(FILES['dist/app.bin']) // 2}-"]


async def test_a_file_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    server = Server({"notes.txt": b"longer than said"})
    with pytest.raises(InputFailed, match="larger than the master said"):
        await fetch(tmp_path, server, {"notes.txt": b"notes"})
    assert os.listdir(tmp_path / "ws") == []  # nothing left behind
    server = Server({"notes.txt": b"NOTES"})  # same size, other bytes
    with pytest.raises(InputFailed, match="does not match its SHA-256"):
        await fetch(tmp_path, server, {"notes.txt": b"notes"})


async def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFailed, match="404"):
        await fetch(tmp_path, Server({}), {"notes.txt": b"notes"})


async def test_links_in_the_way_are_replaced_or_refused_never_written_through(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target.txt"
    target.write_text("untouched")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.symlink(target, workspace / "notes.txt")
    await fetch(tmp_path, Server(FILES), {"notes.txt": FILES["notes.txt"]})
    assert target.read_text() == "untouched"
    assert not (workspace / "notes.txt").is_symlink()
    assert (workspace / "notes.txt").read_bytes() == b"notes"
    os.symlink(outside, workspace / "dist")  # a folder on the way that is a link
    with pytest.raises(InputFailed, match="symbolic link"):
        await fetch(tmp_path, Server(FILES), {"dist/app.bin": FILES["dist/app.bin"]})
    assert sorted(os.listdir(outside)) == ["target.txt"]


def test_only_paths_inside_the_workspace_are_taken() -> None:
    assert inputs.split_glob("../x")[1] is not None
    assert inputs.split_glob("/x")[1] is not None
