"""A run's artifacts on the website: each file downloadable (the API's route, under the
session), small text files shown escaped in the page, images through an <img> of the download
route (never SVG, which could carry script), the JUnit counts with the failed tests' names."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from orchestra.domain.models import Run
from orchestra.errors import OrchestraError
from orchestra.services.container import Services
from orchestra.web.api.artifacts import artifact_response

router = APIRouter()

PREVIEW_BYTES = 64 << 10  # a text file shown in the page at most this large
PREVIEWS = 5  # and at most this many of them
TEXT_SUFFIXES = frozenset(
    {".txt", ".log", ".md", ".json", ".csv", ".xml", ".yaml", ".yml", ".ini", ".cfg", ".toml"}
)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass(frozen=True)
class ShownArtifact:
    path: str
    size: str
    sha256: str
    url: str  # shown in place (an image)
    download_url: str
    kind: str  # "image", "text" or "file"
    preview: str | None = None  # a small text file's text (escaped by the template)


def file_size(size: int) -> str:
    """Bytes for people: 512 B, 1.5 KiB, 3.0 MiB, 1.2 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


async def shown_artifacts(services: Services, run: Run) -> list[ShownArtifact]:
    """The run's files as its page shows them, the first few small text files read."""
    shown = []
    previews = 0
    base = f"/projects/{quote(run.project)}/runs/{quote(run.identifier)}/artifacts/"
    for item in run.artifacts:
        path, size = str(item["path"]), int(item["size"])
        name = path.rsplit("/", 1)[-1].lower()
        guessed = mimetypes.guess_type(name)[0] or ""
        kind = "file"
        if guessed in IMAGE_TYPES:
            kind = "image"
        elif any(name.endswith(suffix) for suffix in TEXT_SUFFIXES):
            kind = "text"
        preview = None
        if kind == "text" and size <= PREVIEW_BYTES and previews < PREVIEWS:
            preview = await _text_of(services, run, path, size)
            previews += 1
        url = base + quote(path)
        shown.append(
            ShownArtifact(
                path=path,
                size=file_size(size),
                sha256=str(item["sha256"]),
                url=url,
                download_url=url + "?download=true",
                kind=kind,
                preview=preview,
            )
        )
    return shown


async def _text_of(services: Services, run: Run, path: str, size: int) -> str | None:
    if size == 0:
        return ""
    try:
        data = b"".join([p async for p in services.artifacts.read(run.identifier, path, 0, size)])
    except OrchestraError:
        return None  # not readable now: the file is still listed and downloadable
    return data.decode("utf-8", errors="replace")


def tests_line(tests: dict[str, Any] | None) -> str | None:
    if not tests:
        return None
    return f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped"


@router.get("/projects/{project}/runs/{run}/artifacts/{path:path}")
async def download(
    request: Request,
    project: str,
    run: str,
    path: str,
    download: Annotated[bool, Query()] = False,
) -> Response:
    services: Services = request.app.state.services
    return await artifact_response(services, request, project, run, path, download)
