"""A run's artifacts in a real browser: the run page lists the files with their sizes, each
downloads byte for byte, a small text file is shown escaped (its markup as text), an image is
shown through the download route, an HTML file is never rendered, and the JUnit counts and the
failed tests' names are on the page. The files are uploaded as a worker does it (the upload
protocol), for a run made to run on a worker that never connects."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from orchestra.protocol import messages as m
from orchestra.services.master_side import MasterSide
from orchestra.storage.schema import run as run_table
from tests.browser.conftest import Site, login, screenshot
from tests.conftest import build_services


def png(width: int, height: int) -> bytes:
    """A small red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def running_run(site: Site) -> tuple[str, str]:
    """A run of a job no worker matches, made to run on worker `uploader-w` of a new worker
    user; (run, that user's token)."""
    services = build_services(f"sqlite:///{site.data_dir / 'orchestra.sqlite'}", site.data_dir)
    try:
        await services.users.create_user("uploader", roles=["worker"])
        _, token = await services.users.create_token("uploader", "test", None)
        hello = m.Hello(
            protocol=m.PROTOCOL_VERSION,
            identifier="uploader-w",
            display_name="uploader",
            version="test",
            properties={},
            executors=1,
        )
        await MasterSide.build(services, "test").registry.register("uploader", hello)
        run = await services.runs.trigger("example", "kept", {}, {"type": "api", "user": "admin"})
        async with services.db.transaction() as conn:
            await conn.execute(
                sa.update(run_table)
                .where(run_table.c.identifier == run.identifier)
                .values(status="running", worker="uploader-w", start_date=services.clock.now())
            )
        return run.identifier, token
    finally:
        await services.close()


def upload(site: Site, token: str, run: str, path: str, data: bytes, **extra: Any) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=site.url + "/api/v1", headers=headers, timeout=30) as http:
        body = {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        assert http.post(f"/artifact-uploads/{run}", json={**body, **extra}).json()["offset"] == 0
        done = http.put(
            f"/artifact-uploads/{run}",
            params={"path": path, "offset": 0},
            content=data,
            headers={"X-Chunk-SHA256": hashlib.sha256(data).hexdigest()},
        )
        assert done.json() == {"offset": len(data), "complete": True}, done.text


def test_the_run_page_lists_shows_and_downloads_artifacts(
    page: Page, site: Site, tmp_path: Path
) -> None:
    site.api(
        "PUT",
        "/projects/example/jobs/kept",
        json={"steps": [{"command": ["true"]}], "properties": {"nowhere": "true"}},
    )
    # Playwright's sync API holds this thread's event loop: the database work goes in another.
    with ThreadPoolExecutor(1) as pool:
        run, token = pool.submit(asyncio.run, running_run(site)).result()
    image = png(24, 16)
    notes = b"<script>window.hacked = true</script>\nplain notes\n"
    binary = bytes(range(256)) * 40
    upload(site, token, run, "shots/red.png", image)
    upload(site, token, run, "notes.txt", notes)
    upload(site, token, run, "report.html", b"<h1 id='injected'>hi</h1>")
    upload(site, token, run, "dist/app.bin", binary)
    junit = {"passed": 7, "failed": 2, "skipped": 1, "failures": ["suite.test_one", "<b>two</b>"]}
    upload(site, token, run, "junit.xml", b"<testsuite/>", junit=junit)

    login(page, site, "viewer")
    page.goto(f"{site.url}/projects/example/runs/{run}")
    rows = page.locator("#artifacts tbody tr")
    expect(rows).to_have_count(5)
    expect(page.locator('#artifacts tr[data-artifact="dist/app.bin"] td').nth(1)).to_have_text(
        "10.0 KiB"
    )
    expect(page.locator('#artifacts tr[data-artifact="notes.txt"] td').nth(1)).to_have_text(
        f"{len(notes)} B"
    )
    # The text file's markup is shown as text, never run.
    preview = page.locator("details.artifact-preview", has_text="notes.txt")
    preview.locator("summary").click()
    expect(preview.locator("pre")).to_contain_text("<script>window.hacked = true</script>")
    assert page.evaluate("window.hacked") is None
    expect(page.locator("#injected")).to_have_count(0)
    # The image, through the download route.
    shown = page.locator('figure.artifact-preview img[alt="shots/red.png"]')
    expect(shown).to_be_visible()
    # Polled from here: the page's CSP forbids wait_for_function's evaluation of a string.
    deadline = time.monotonic() + 15
    width = "document.querySelector('figure.artifact-preview img').naturalWidth"
    while page.evaluate(width) != 24:
        assert time.monotonic() < deadline, "the image did not load"
        page.wait_for_timeout(50)
    # JUnit counts and the failed tests' names (escaped).
    expect(page.locator("#tests-counts")).to_have_text("7 passed, 2 failed, 1 skipped")
    expect(page.locator("#tests-failures li")).to_have_text(["suite.test_one", "<b>two</b>"])
    screenshot(page, "run-artifacts")

    for path, data in (("dist/app.bin", binary), ("notes.txt", notes), ("report.html", None)):
        with page.expect_download() as started:
            page.locator(f'#artifacts tr[data-artifact="{path}"] a').click()
        saved = tmp_path / path.replace("/", "_")
        started.value.save_as(saved)
        if data is not None:
            assert saved.read_bytes() == data
        else:
            assert saved.read_bytes() == b"<h1 id='injected'>hi</h1>"

    # The project's page says how much its artifacts take.
    page.goto(f"{site.url}/projects/example")
    total = len(image) + len(notes) + 25 + len(binary) + len(b"<testsuite/>")
    expect(page.locator("#artifacts-size")).to_contain_text("Artifacts:")
    assert site.api("GET", "/projects/example").json()["artifacts_size"] == total
