"""The upload protocol a worker follows, on both engines and both stores: chunks, resume after a
cut, the offset conflict, a bad chunk, a whole-file mismatch, the limits, who may upload; and the
files read back byte for byte with Range, on the run and the project."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from tests.helpers import auth
from tests.support.artifact_world import CHUNK, MAX_FILE, MIB, World, sha
from tests.support.s3 import S3Server


async def test_artifacts_round_trip_byte_for_byte_with_ranges(world: World, store: str) -> None:
    run = await world.running_run()
    binary = os.urandom(13 * MIB + 12345)  # three chunks of 8, 5 and the rest
    await world.upload(run, "out/bin/app.bin", binary)
    await world.upload(run, "out/empty.txt", b"")
    await world.upload(run, "out/notes é.txt", b"line one\nline two\n")

    base = f"/api/v1/projects/p/runs/{run}"
    listed = (await world.get(f"{base}/artifacts")).json()
    assert [a["path"] for a in listed["items"]] == [
        "out/bin/app.bin",
        "out/empty.txt",
        "out/notes é.txt",
    ]
    assert listed["items"][0] == {
        "path": "out/bin/app.bin",
        "size": len(binary),
        "sha256": sha(binary),
    }
    assert listed["next_cursor"] is None
    paged = (await world.get(f"{base}/artifacts?limit=2")).json()
    assert len(paged["items"]) == 2 and paged["next_cursor"]
    rest = (await world.get(f"{base}/artifacts?limit=2&cursor={paged['next_cursor']}")).json()
    assert [a["path"] for a in rest["items"]] == ["out/notes é.txt"]

    shown = (await world.get(base, who="wk")).json()  # the worker role reads runs too
    assert [a["path"] for a in shown["artifacts"]] == [a["path"] for a in listed["items"]]
    runs = (await world.get("/api/v1/projects/p/runs")).json()["items"]
    assert runs[0]["artifacts"] == listed["items"]

    whole = await world.get(f"{base}/artifacts/out/bin/app.bin")
    assert whole.status_code == 200
    assert whole.content == binary
    assert whole.headers["content-length"] == str(len(binary))
    assert whole.headers["x-content-type-options"] == "nosniff"
    middle = await world.get(f"{base}/artifacts/out/bin/app.bin", Range="bytes=1000-8388700")
    assert middle.status_code == 206
    assert middle.content == binary[1000:8388701]
    assert middle.headers["content-range"] == f"bytes 1000-8388700/{len(binary)}"
    tail = await world.get(f"{base}/artifacts/out/bin/app.bin", Range="bytes=-10")
    assert (tail.status_code, tail.content) == (206, binary[-10:])
    past = await world.get(f"{base}/artifacts/out/bin/app.bin", Range=f"bytes={len(binary)}-")
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(binary)}"
    empty = await world.get(f"{base}/artifacts/out/empty.txt")
    assert (empty.status_code, empty.content) == (200, b"")
    text = await world.get(f"{base}/artifacts/out/notes%20%C3%A9.txt")
    assert text.content == b"line one\nline two\n"
    assert text.headers["content-type"].startswith("text/plain")
    missing = await world.get(f"{base}/artifacts/out/none.txt")
    assert missing.status_code == 404

    project = (await world.get("/api/v1/projects/p")).json()
    assert project["artifacts_size"] == len(binary) + len(b"line one\nline two\n")

    if store == "file":
        kept = Path(world.services.artifacts.store.root)  # type: ignore[attr-defined]
        stored = kept / run / "out" / "bin" / "app.bin"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((kept / run).stat().st_mode) == 0o700


async def test_an_upload_cut_resumes_from_the_offset_the_server_holds(world: World) -> None:
    run = await world.running_run()
    data = os.urandom(12 * MIB)
    assert (await world.begin(run, "out/a.bin", data)).json() == {"offset": 0, "complete": False}
    assert (await world.put(run, "out/a.bin", 0, data[:CHUNK])).json()["offset"] == CHUNK

    # The connection is lost in the middle of the next chunk: nothing of it is kept.
    async def cut() -> AsyncIterator[bytes]:
        yield data[CHUNK : CHUNK + MIB]
        raise ClientDisconnect()

    caller = await world.services.users.authenticate(world.tokens["wk"], None)
    assert caller is not None
    with pytest.raises(ClientDisconnect):
        await world.services.artifacts.put(
            caller, run, "out/a.bin", CHUNK, sha(data[CHUNK : 2 * CHUNK]), CHUNK, cut()
        )
    # The worker comes back: the POST says where to resume; a chunk elsewhere is a 409.
    assert (await world.begin(run, "out/a.bin", data)).json()["offset"] == CHUNK
    conflict = await world.put(run, "out/a.bin", 0, data[:CHUNK])
    assert conflict.status_code == 409
    assert conflict.json()["offset"] == CHUNK
    ahead = await world.put(run, "out/a.bin", 2 * CHUNK, data[2 * CHUNK :])
    assert (ahead.status_code, ahead.json()["offset"]) == (409, CHUNK)
    # A chunk altered on the way is dropped (400), and the offset stays.
    bad = await world.put(run, "out/a.bin", CHUNK, data[CHUNK : 2 * CHUNK], digest=sha(b"x"))
    assert bad.status_code == 400, bad.text
    again = await world.put(run, "out/a.bin", CHUNK, data[CHUNK : 2 * CHUNK])
    assert again.json() == {"offset": 2 * CHUNK, "complete": False}
    # A chunk but the last under the minimum is refused.
    short = await world.put(run, "out/a.bin", 2 * CHUNK, data[2 * CHUNK : 2 * CHUNK + 10])
    assert short.status_code == 400
    done = await world.put(run, "out/a.bin", 2 * CHUNK, data[2 * CHUNK :])
    assert done.json() == {"offset": len(data), "complete": True}
    # Its answer lost, the last chunk comes again: the file is stored, once.
    again = await world.put(run, "out/a.bin", 2 * CHUNK, data[2 * CHUNK :])
    assert again.json() == {"offset": len(data), "complete": True}
    assert (await world.begin(run, "out/a.bin", data)).json()["offset"] == len(data)
    got = await world.get(f"/api/v1/projects/p/runs/{run}/artifacts/out/a.bin")
    assert got.content == data


async def test_a_resumed_upload_checks_the_whole_file_without_the_followed_hash(
    world: World,
) -> None:
    """Another API server (here: this one, its memory cleared) takes the rest of an upload:
    the whole file's hash is checked by reading the staged bytes back."""
    run = await world.running_run()
    data = os.urandom(7 * MIB)
    await world.begin(run, "out/b.bin", data)
    await world.put(run, "out/b.bin", 0, data[:CHUNK])
    world.services.artifacts._hashers.clear()
    done = await world.put(run, "out/b.bin", CHUNK, data[CHUNK:])
    assert done.json()["complete"] is True
    got = await world.get(f"/api/v1/projects/p/runs/{run}/artifacts/out/b.bin")
    assert got.content == data

    # And a file whose bytes are not the ones declared is refused, the same way.
    fake = os.urandom(6 * MIB)
    declared = {"path": "out/c.bin", "size": len(fake), "sha256": sha(b"another")}
    headers = auth(world.tokens["wk"])
    answer = await world.api.request(
        "POST", f"/api/v1/artifact-uploads/{run}", json=declared, headers=headers
    )
    assert answer.json()["offset"] == 0
    await world.put(run, "out/c.bin", 0, fake[:CHUNK])
    world.services.artifacts._hashers.clear()
    refused = await world.put(run, "out/c.bin", CHUNK, fake[CHUNK:])
    assert refused.status_code == 422, refused.text
    assert (
        await world.get(f"/api/v1/projects/p/runs/{run}/artifacts/out/c.bin")
    ).status_code == 404


async def test_a_whole_file_mismatch_discards_the_upload(
    world: World, store: str, store_settings: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    run = await world.running_run()
    data = os.urandom(6 * MIB)
    headers = auth(world.tokens["wk"])
    declared = {"path": "out/x.bin", "size": len(data), "sha256": sha(b"not these bytes")}
    answer = await world.api.request(
        "POST", f"/api/v1/artifact-uploads/{run}", json=declared, headers=headers
    )
    assert answer.json()["offset"] == 0
    assert (await world.put(run, "out/x.bin", 0, data[:CHUNK])).status_code == 200
    refused = await world.put(run, "out/x.bin", CHUNK, data[CHUNK:])
    assert refused.status_code == 422
    assert "SHA-256" in refused.json()["detail"]
    gone = await world.put(run, "out/x.bin", CHUNK, data[CHUNK:])
    assert gone.status_code == 404  # the upload is no more: POST again
    assert (await world.get(f"/api/v1/projects/p/runs/{run}")).json()["artifacts"] == []
    if store == "file":
        kept = Path(store_settings["artifacts_url"].removeprefix("file://"))
        assert list((kept / ".uploads").iterdir()) == []
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = store_settings["artifacts_url"].removeprefix("s3://").split("/")[0]
        assert s3.multipart_uploads(bucket) == []
        assert s3.keys(bucket) == []


async def test_limits_refuse_with_413_and_a_reason(world: World) -> None:
    run = await world.running_run()
    big = {"path": "out/big", "size": MAX_FILE + 1, "sha256": "0" * 64}
    headers = auth(world.tokens["wk"])
    url = f"/api/v1/artifact-uploads/{run}"
    answer = await world.api.request("POST", url, json=big, headers=headers)
    assert answer.status_code == 413
    assert "per file" in answer.json()["detail"]
    for index in range(2):
        part = {"path": f"out/{index}", "size": 16 * MIB, "sha256": "0" * 64}
        assert (await world.api.request("POST", url, json=part, headers=headers)).json() == {
            "offset": 0,
            "complete": False,
        }
    over = {"path": "out/2", "size": 9 * MIB, "sha256": "0" * 64}
    answer = await world.api.request("POST", url, json=over, headers=headers)
    assert answer.status_code == 413
    assert "per run" in answer.json()["detail"]
    chunk = await world.api.request(
        "PUT",
        url,
        params={"path": "out/0", "offset": 0},
        content=b"x" * (16 * MIB + 1),
        headers={**headers, "X-Chunk-SHA256": "0" * 64},
    )
    assert chunk.status_code == 413


async def test_only_the_runs_own_worker_uploads_while_it_runs(world: World) -> None:
    run = await world.running_run()
    data = b"payload"
    assert (await world.begin(run, "out/f", data, who="other")).status_code == 403
    assert (await world.begin(run, "out/f", data, who="viewer")).status_code == 403
    assert (await world.put(run, "out/f", 0, data, who="other")).status_code == 403
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await world.begin(unknown, "out/f", data)).status_code == 404
    assert (await world.begin("not-a-run", "out/f", data)).status_code == 404
    assert (await world.begin(run, "out/f", data)).status_code == 200
    await world.set_run(run, status="succeeded")
    ended = await world.put(run, "out/f", 0, data)
    assert ended.status_code == 409
    assert (await world.begin(run, "out/f", data)).status_code == 409
    anonymous = await world.api.request("POST", f"/api/v1/artifact-uploads/{run}", json={})
    assert anonymous.status_code == 401
