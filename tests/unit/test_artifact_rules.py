"""Artifacts' rules without a server: a job's `artifacts` entries and their refusals, stored
paths, JUnit counts, byte ranges and the download's headers, and the client writing what a
hostile server lists (never outside its folder, never through a link, never a corrupt file)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestra.client import AsyncClient, Client
from orchestra.client.artifact_files import UnsafePath, target, write
from orchestra.client.errors import ClientError
from orchestra.domain.artifacts import add_tests, check_path, parse_artifacts, parse_junit
from orchestra.errors import InvalidInput
from orchestra.web.api.artifacts import byte_range, file_headers


def test_job_artifacts_entries_take_defaults_and_refuse_what_leads_out() -> None:
    assert parse_artifacts(None) is None
    assert parse_artifacts([]) is None
    assert parse_artifacts(
        ["dist/*.whl", {"path": "r.xml", "report": "junit", "when": "always"}]
    ) == [
        {"path": "dist/*.whl", "when": "success"},
        {"path": "r.xml", "when": "always", "report": "junit"},
    ]
    for bad, words in (
        ([{"path": "../x"}], r"artifacts\[0\]\.path '\.\./x' leads out"),
        ([{"path": "ok"}, {"path": "a/../../b"}], r"artifacts\[1\]\.path"),
        ([{"path": "/etc/*"}], "absolute"),
        ([{"path": "C:\\x"}], "absolute"),
        ([{"path": "~/x"}], "absolute"),
        ([{"path": "a\\..\\b"}], "leads out"),
        ([{"path": ""}], "glob"),
        ([{"path": "a", "when": "never"}], "when"),
        ([{"path": "a", "extra": 1}], "unknown"),
        ("dist/*", "list"),
    ):
        with pytest.raises(InvalidInput, match=words):
            parse_artifacts(bad)


@pytest.mark.parametrize(
    "path", ["../a", "/a", "a/../b", "a//b", "./a", "a/.", "a\\b", "a\x00b", "", "a/" * 600]
)
def test_stored_paths_are_relative_and_plain(path: str) -> None:
    with pytest.raises(InvalidInput):
        check_path(path)


def test_junit_counts_are_checked_and_summed() -> None:
    first = parse_junit({"passed": 1, "failed": 1, "skipped": 0, "failures": ["t"]})
    assert first is not None
    assert add_tests(add_tests(None, first), first) == {
        "passed": 2,
        "failed": 2,
        "skipped": 0,
        "failures": ["t", "t"],
    }
    for bad in ({"passed": -1}, {"failed": True}, {"failures": "t"}, [1]):
        with pytest.raises(InvalidInput):
            parse_junit(bad)


def test_byte_ranges() -> None:
    assert byte_range(None, 100) is None
    assert byte_range("bytes=0-9", 100) == (0, 9)
    assert byte_range("bytes=90-", 100) == (90, 99)
    assert byte_range("bytes=90-500", 100) == (90, 99)
    assert byte_range("bytes=-5", 100) == (95, 99)
    assert byte_range("bytes=-500", 100) == (0, 99)
    assert byte_range("bytes=100-", 100) == "unsatisfiable"
    assert byte_range("bytes=0-1,5-6", 100) is None  # several: the whole file
    assert byte_range("lines=1-2", 100) is None
    assert byte_range("bytes=5-1", 100) is None


def test_active_content_goes_as_text_attachments() -> None:
    for name in ("a.html", "a.htm", "a.svg", "a.xhtml", "a.xml", "a.js"):
        headers = file_headers(f"out/{name}", download=False)
        assert headers["Content-Type"].startswith("text/plain"), name
        assert headers["Content-Disposition"].startswith("attachment"), name
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert file_headers("a.png", False)["Content-Disposition"].startswith("inline")
    assert file_headers("a.png", True)["Content-Disposition"].startswith("attachment")
    quoted = file_headers('x/"evil\r\nname".txt', False)["Content-Disposition"]
    assert "\r" not in quoted and "\n" not in quoted and '"evil' not in quoted


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "a\\..\\x", "C:/x", ""])
def test_the_client_refuses_paths_that_lead_out(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafePath):
        target(tmp_path, path)


def test_the_client_writes_through_no_link_and_keeps_no_corrupt_file(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    output = tmp_path / "out"
    output.mkdir()
    (output / "linked").symlink_to(outside)
    with pytest.raises(UnsafePath):
        write(output, "linked/x", [b"data"], None)
    (output / "file").symlink_to(outside / "victim")
    with pytest.raises(UnsafePath):
        write(output, "file", [b"data"], None)
    assert list(outside.iterdir()) == []
    with pytest.raises(ClientError, match="SHA-256"):
        write(output, "a/b.bin", [b"data"], hashlib.sha256(b"other").hexdigest())
    assert list((output / "a").iterdir()) == []
    done = write(output, "a/b.bin", [b"da", b"ta"], hashlib.sha256(b"data").hexdigest())
    assert done.read_bytes() == b"data"


def test_download_from_a_hostile_server_writes_nothing_outside(tmp_path: Path) -> None:
    data = os.urandom(1000)
    listing = [
        {"path": "fine.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        {"path": "../escape.bin", "size": 1, "sha256": "0" * 64},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/artifacts"):
            return httpx.Response(200, json={"items": listing, "next_cursor": None})
        return httpx.Response(200, content=data)

    client = Client("http://server.invalid", token="t")
    client._http = httpx.Client(
        transport=httpx.MockTransport(answer), base_url="http://server.invalid/api/v1"
    )
    output = tmp_path / "out"
    with pytest.raises(UnsafePath):
        client.download("p", "r", None, output)
    assert not (tmp_path / "escape.bin").exists()
    assert list(output.iterdir()) == []  # every path is checked before anything is written
    listing.pop()
    with client:
        written: Any = client.download("p", "r", None, output)
    assert [p.read_bytes() for p in written] == [data]


async def test_the_async_client_downloads_the_same_way(tmp_path: Path) -> None:
    data = os.urandom(3000)
    listing = [
        {"path": "d/fine.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        {"path": "/etc/escape", "size": 1, "sha256": "0" * 64},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/artifacts"):
            return httpx.Response(200, json={"items": listing, "next_cursor": None})
        return httpx.Response(200, content=data)

    client = AsyncClient("http://server.invalid", token="t")
    client._http = httpx.AsyncClient(
        transport=httpx.MockTransport(answer), base_url="http://server.invalid/api/v1"
    )
    output = tmp_path / "out"
    with pytest.raises(UnsafePath):
        await client.download("p", "r", None, output)
    assert list(output.iterdir()) == []
    listing.pop()
    async with client:
        written = await client.download("p", "r", "d/fine.bin", output)
    assert [p.relative_to(output).as_posix() for p in written] == ["d/fine.bin"]
    assert written[0].read_bytes() == data
