"""Artifacts (docs/artifacts.md): the upload protocol workers follow, and a run's files listed
and downloaded (byte for byte, with Range)."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from orchestra.errors import InvalidInput, PayloadTooLarge
from orchestra.services.artifacts import OffsetConflict
from orchestra.services.container import Services
from orchestra.web.api.schemas import ArtifactOut, Page, TestsOut
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["artifacts"])

# Types a browser may show in place; any other is downloaded (Content-Disposition: attachment),
# and the ones that could run script in the site's origin (HTML, SVG, XML) are sent as text.
INLINE_TYPES = frozenset(
    {
        "text/plain",
        "text/csv",
        "application/json",
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
    }
)
ACTIVE_TYPES = re.compile(r"html|xml|svg|javascript|ecmascript|x-sh", re.IGNORECASE)
# At most 18 digits each (past them int() could refuse: the header is then ignored).
RANGE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")


class UploadIn(BaseModel):
    path: str = Field(max_length=1000, description="the file's path relative to the workspace")
    size: int = Field(ge=0, le=2**62)
    sha256: str = Field(description="the whole file's SHA-256, hexadecimal")
    junit: TestsOut | None = Field(default=None, description="a JUnit report's counts")


class UploadOut(BaseModel):
    offset: int = Field(description="the bytes of this file the server holds")
    complete: bool = False


@router.post("/artifact-uploads/{run}", response_model=UploadOut)
async def begin_upload(run: str, body: UploadIn, caller: CallerDep, services: ServicesDep) -> Any:
    junit = None if body.junit is None else body.junit.model_dump()
    offset = await services.artifacts.begin(caller, run, body.path, body.size, body.sha256, junit)
    return {"offset": offset}


@router.put(
    "/artifact-uploads/{run}",
    response_model=UploadOut,
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "required": True,
        }
    },
)
async def put_chunk(
    run: str,
    request: Request,
    caller: CallerDep,
    services: ServicesDep,
    path: Annotated[str, Query(max_length=1000, description="the file's path")],
    offset: Annotated[int, Query(ge=0, le=2**62, description="where the chunk starts")],
) -> Any:
    raw_length = request.headers.get("content-length")
    if raw_length is None or not raw_length.isdigit():
        raise InvalidInput("a chunk is sent with its Content-Length")
    length = int(raw_length)
    if length > 16 << 20:
        raise PayloadTooLarge("a chunk is at most 16 MiB")
    digest = request.headers.get("x-chunk-sha256", "")
    try:
        return await services.artifacts.put(
            caller, run, path, offset, digest, length, _body(request)
        )
    except OffsetConflict as exc:
        return JSONResponse({"detail": exc.message, "offset": exc.held}, 409)
    except ClientDisconnect:
        raise InvalidInput("the chunk was cut before its end") from None


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for piece in request.stream():
        if piece:
            yield piece


@router.get("/projects/{project}/runs/{run}/artifacts", response_model=Page[ArtifactOut])
async def list_artifacts(
    project: str, run: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Any:
    items, next_cursor = await services.artifacts.page(project, run, cursor, limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/projects/{project}/runs/{run}/artifacts/{path:path}",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"},
        206: {"description": "the range asked for"},
        416: {"description": "a range past the file's end"},
    },
)
async def download_artifact(
    project: str,
    run: str,
    path: str,
    request: Request,
    services: ServicesDep,
    download: Annotated[bool, Query(description="always as an attachment")] = False,
) -> Response:
    return await artifact_response(services, request, project, run, path, download)


async def artifact_response(
    services: Services, request: Request, project: str, run: str, path: str, download: bool
) -> Response:
    """A stored file's bytes (or the range asked for) with safe headers: the API's and the
    website's download."""
    found = await services.artifacts.find(project, run, path)
    size = int(found["size"])
    headers = file_headers(found["path"], download)
    headers["Accept-Ranges"] = "bytes"
    headers["ETag"] = f'"{found["sha256"]}"'
    start, length, status = 0, size, 200
    wanted = byte_range(request.headers.get("range"), size)
    if isinstance(wanted, str):  # unsatisfiable
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **_safety()})
    if wanted is not None:
        start, end = wanted[0], wanted[1]
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(length)
    media_type = headers.pop("Content-Type")
    if length == 0:
        return Response(b"", status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        services.artifacts.read(run, found["path"], start, length),
        status_code=status,
        headers=headers,
        media_type=media_type,
    )


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The one range `Range: bytes=...` asks for, as (first, last); None for the whole file
    (no header, one the server ignores, several ranges); "unsatisfiable" past the end."""
    if not header:
        return None
    match = RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - count), size - 1
    start = int(first)
    if start >= size:
        return "unsatisfiable"
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None
    return start, end


def file_headers(path: str, download: bool) -> dict[str, str]:
    """Content-Type and -Disposition for a stored file: shown in place only when its type is a
    harmless one, never HTML or SVG (those go as text/plain, as attachments)."""
    guessed = mimetypes.guess_type(path.rsplit("/", 1)[-1])[0] or "application/octet-stream"
    active = bool(ACTIVE_TYPES.search(guessed))
    inline = not download and not active and guessed in INLINE_TYPES
    content_type = "text/plain; charset=utf-8" if active else guessed
    if content_type.startswith("text/") and "charset" not in content_type:
        content_type += "; charset=utf-8"
    name = path.rsplit("/", 1)[-1]
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "artifact"
    disposition = "inline" if inline else "attachment"
    return {
        "Content-Type": content_type,
        "Content-Disposition": (
            f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
        ),
        **_safety(),
    }


def _safety() -> dict[str, str]:
    return {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        "Cache-Control": "private, no-cache",
    }
