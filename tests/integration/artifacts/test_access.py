"""Artifacts' edges on both engines and both stores: paths that lead out (upload and download),
active content never served inline, JUnit counts, retention deleting files and objects (orphans
and unfinished uploads swept), and the job's `artifacts` entries validated and handed to the
worker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from orchestra.protocol import messages as m
from orchestra.services.retention import RetentionService
from orchestra.storage.schema import artifact_upload
from orchestra.storage.schema import run as run_table
from tests.helpers import auth
from tests.support.artifact_world import CHUNK, MIB, STEPS, World
from tests.support.s3 import S3Server


@pytest.mark.parametrize(
    "path", ["../escape", "/etc/passwd", "out/../../x", "a\\b", "a//b", "./a", "a/\x00b", ""]
)
async def test_upload_paths_that_lead_out_are_refused(world: World, path: str) -> None:
    run = await world.running_run()
    answer = await world.begin(run, path, b"data")
    assert answer.status_code == 422, answer.text
    assert (await world.put(run, path, 0, b"data")).status_code in (404, 422)


async def test_download_paths_that_lead_out_find_nothing(world: World) -> None:
    run = await world.running_run()
    await world.upload(run, "out/a.txt", b"hello")
    base = f"/api/v1/projects/p/runs/{run}/artifacts"
    for attack in (
        "..%2f..%2fetc%2fpasswd",
        "%2e%2e/%2e%2e/etc/passwd",
        "out/%2e%2e/out/a.txt",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "out%5c..%5ca.txt",
    ):
        answer = await world.api.request(
            "GET", f"{base}/{attack}", headers=auth(world.tokens["viewer"])
        )
        assert answer.status_code == 404, (attack, answer.status_code)
    other = await world.api.request(
        "GET",
        f"/api/v1/projects/q/runs/{run}/artifacts/out/a.txt",
        headers=auth(world.tokens["admin"]),
    )
    assert other.status_code == 404


async def test_active_content_is_never_served_inline(world: World) -> None:
    run = await world.running_run()
    page = b"<html><script>alert(1)</script></html>"
    await world.upload(run, "out/report.html", page)
    await world.upload(run, "out/logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    await world.upload(run, "out/shot.png", b"\x89PNG\r\n\x1a\n")
    base = f"/api/v1/projects/p/runs/{run}/artifacts"
    for name in ("report.html", "logo.svg"):
        answer = await world.get(f"{base}/out/{name}")
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.headers["content-disposition"].startswith("attachment")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in answer.headers["content-security-policy"]
    image = await world.get(f"{base}/out/shot.png")
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline")
    forced = await world.get(f"{base}/out/shot.png?download=true")
    assert forced.headers["content-disposition"].startswith("attachment")


async def test_junit_counts_are_summed_on_the_run(world: World) -> None:
    run = await world.running_run()
    first = {"passed": 3, "failed": 1, "skipped": 2, "failures": ["suite.test_a"]}
    second = {"passed": 5, "failed": 2, "skipped": 0, "failures": ["b.one", "b.two"]}
    await world.upload(run, "out/a.xml", b"<testsuite/>", junit=first)
    await world.upload(run, "out/b.xml", b"<testsuite />", junit=second)
    shown = (await world.get(f"/api/v1/projects/p/runs/{run}")).json()
    assert shown["tests"] == {
        "passed": 8,
        "failed": 3,
        "skipped": 2,
        "failures": ["suite.test_a", "b.one", "b.two"],
    }


async def test_retention_deletes_the_files_and_sweeps_orphans(
    world: World, store: str, store_settings: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    services = world.services
    kept_run = await world.running_run()
    old_run = await world.running_run()
    orphan_run = await world.running_run()
    ended_run = await world.running_run()
    for run in (kept_run, old_run, orphan_run, ended_run):
        await world.upload(run, "out/a.bin", os.urandom(1000))
        await world.upload(run, "out/deep/b.txt", b"b")
    await world.begin(kept_run, "out/staged.bin", os.urandom(6 * MIB))  # an upload in progress
    await world.put(kept_run, "out/staged.bin", 0, os.urandom(CHUNK))
    # A run that ended (its worker never came back) with an upload unfinished.
    await world.begin(ended_run, "out/staged.bin", os.urandom(6 * MIB))
    await world.put(ended_run, "out/staged.bin", 0, os.urandom(CHUNK))
    await world.set_run(ended_run, status="exception", completion_date=services.clock.now())
    long_ago = services.clock.now().replace(year=2000)
    await world.set_run(
        old_run, status="succeeded", completion_date=long_ago, creation_date=long_ago
    )
    # A run deleted by other means than retention (its files are then orphans).
    async with services.db.transaction() as conn:
        await conn.execute(sa.delete(run_table).where(run_table.c.identifier == orphan_run))

    assert sorted(await services.artifacts.store.stored_runs()) == sorted(
        [kept_run, old_run, orphan_run, ended_run]
    )
    retention = RetentionService(services.db, services.clock, 1.0, services.artifacts)
    assert await retention.sweep() == 1
    assert await services.artifacts.store.stored_runs() == sorted([kept_run, ended_run])
    async with services.db.read() as conn:
        staged = (await conn.execute(sa.select(artifact_upload.c.run))).scalars().all()
    assert staged == [kept_run]  # the ended run's unfinished upload is dropped, its files kept
    ended = (await world.get(f"/api/v1/projects/p/runs/{ended_run}")).json()
    assert [a["path"] for a in ended["artifacts"]] == ["out/a.bin", "out/deep/b.txt"]
    got = await world.get(f"/api/v1/projects/p/runs/{kept_run}/artifacts/out/deep/b.txt")
    assert got.content == b"b"
    if store == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = store_settings["artifacts_url"].removeprefix("s3://").split("/")[0]
        assert {k.split("/")[2] for k in s3.keys(bucket)} == {kept_run, ended_run}
        assert [k.split("/")[2] for k in s3.multipart_uploads(bucket)] == [kept_run]
    else:
        staging = Path(store_settings["artifacts_url"].removeprefix("file://")) / ".uploads"
        assert [p.name.split(".")[0] for p in staging.iterdir()] == [kept_run]


async def test_job_artifacts_are_validated_and_reach_the_assignment(world: World) -> None:
    admin = auth(world.tokens["admin"])
    for entry, words in (
        ({"path": "../secrets/*"}, "artifacts[1].path"),
        ({"path": "/etc/*"}, "absolute"),
        ({"path": "a", "when": "sometimes"}, "when"),
        ({"path": "a", "report": "tap"}, "report"),
    ):
        job = {"identifier": "bad", "steps": STEPS, "artifacts": [{"path": "ok/*"}, entry]}
        answer = await world.api.request("POST", "/api/v1/projects/p/jobs", json=job, headers=admin)
        assert answer.status_code == 422, answer.text
        assert words in answer.json()["detail"] or "artifacts" in answer.json()["detail"]
    job = {
        "identifier": "good",
        "steps": STEPS,
        "artifacts": [
            {"path": "dist/**/*.whl"},
            {"path": "junit.xml", "when": "always", "report": "junit"},
        ],
    }
    answer = await world.api.request("POST", "/api/v1/projects/p/jobs", json=job, headers=admin)
    assert answer.status_code == 201, answer.text
    assert answer.json()["artifacts"] == [
        {"path": "dist/**/*.whl", "when": "success", "report": None},
        {"path": "junit.xml", "when": "always", "report": "junit"},
    ]
    run = await world.services.runs.trigger("p", "good", {}, {"type": "api", "user": "admin"})
    assert run.artifact_rules == [
        {"path": "dist/**/*.whl", "when": "success"},
        {"path": "junit.xml", "when": "always", "report": "junit"},
    ]
    message = m.Assign(
        run=run.identifier,
        project="p",
        job="good",
        parameters={},
        workspace=run.workspace,
        steps=[],
        abort_grace=1.0,
        url="http://x",
        artifacts=run.artifact_rules,  # type: ignore[arg-type]
    )
    assert '"artifacts":[{"path":"dist/**/*.whl","when":"success","report":null}' in m.encode(
        message
    )
    plain = m.Assign(
        run=run.identifier,
        project="p",
        job="j",
        parameters={},
        workspace="w",
        steps=[],
        abort_grace=1.0,
        url="http://x",
    )
    assert "artifacts" not in m.encode(plain)
