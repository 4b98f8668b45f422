"""Uploading a run's artifacts to the server over HTTP, with the worker's token
(docs/protocol.md, "Artifacts").

For each file: `POST /api/v1/artifact-uploads/{run}` declares it (path, size, SHA-256, JUnit
counts) and answers the bytes the server already holds; then `PUT ...?path=P&offset=K` sends
it from there in chunks of CHUNK_BYTES, each with its SHA-256 (`X-Chunk-SHA256`), read from
disk as it goes: the next chunk is read (in a thread) while the server takes the last, and at
most two are in memory. The chunks' hashes come from the collection, which hashed them beside
the whole file's (worker/artifacts.py); a chunk is hashed again only after the server refused it
(the file changed) or when an upload resumes after a restart. A connection lost, a server
restarting or a 5xx is retried with exponential backoff and full jitter over the master URLs
the worker was given; after a lost connection the file is declared again, and the server's
`offset` says where to resume, so a chunk that arrived is not sent again.

What ends an upload without storing it (`UploadFailed`): a 413 (the file or the run is over a
limit: the server's reason fails the run), the run no longer being this worker's (403/404:
the master gave up on it), the token refused (401), or a server that keeps failing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from orchestra.worker.artifacts import CHUNK_BYTES, Collected

log = logging.getLogger(__name__)
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
MAX_SERVER_ERRORS = 30  # 5xx answers in a row before an upload is given up (minutes)
MAX_CHANGES = 3  # times a file may be found changed (whole-file hash refused) before giving up
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
# Tests only: seconds to wait before each chunk, to cut an upload in the middle (docs/testing).
PAUSE_VARIABLE = "ORCHESTRA_TEST_UPLOAD_PAUSE"
ROUTE = "/api/v1/artifact-uploads/"
GONE, LOST, DAMAGED = "gone", "lost", "damaged"  # what a PUT may say besides the offset


class UploadFailed(Exception):
    """An upload that cannot be done; `status` is what the run ends with."""

    def __init__(self, reason: str, status: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class FileChanged(Exception):
    """The server refused the whole file's hash: the file changed since it was hashed."""


@dataclass
class ServerLink:
    """Where the worker's HTTP requests go: the master URLs it was given (the same servers
    serve the API), starting with the one it is connected through, and its token."""

    urls: list[str]
    token: str
    preferred: int = 0
    pause: float = field(default_factory=lambda: _pause_from_environment())

    def base(self, attempt: int) -> str:
        return http_base(self.urls[(self.preferred + attempt) % len(self.urls)])

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=TIMEOUT,
            verify=_tls_context(),
            trust_env=False,
            follow_redirects=False,
        )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's certificates, as the WebSocket connection uses them (made once: loading
    them takes a while)."""
    return ssl.create_default_context()


def websocket_url(url: str) -> str:
    """A master URL as the worker was given it, as its WebSocket endpoint."""
    base = url.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    if not base.endswith("/workers/connect"):
        base += "/api/v1/workers/connect"
    return base


def http_base(url: str) -> str:
    """A master URL as the worker was given it, as the base of HTTP requests."""
    base = url.rstrip("/")
    if base.startswith("ws://"):
        base = "http://" + base[len("ws://") :]
    elif base.startswith("wss://"):
        base = "https://" + base[len("wss://") :]
    suffix = "/api/v1/workers/connect"
    if base.endswith(suffix):
        base = base[: -len(suffix)]
    return base


def _pause_from_environment() -> float:
    try:
        return max(0.0, float(os.environ.get(PAUSE_VARIABLE, "0")))
    except ValueError:
        return 0.0


class Retrying:
    """Exponential backoff with full jitter; rotates the URL after each failure."""

    def __init__(self, link: ServerLink) -> None:
        self.link = link
        self.attempt = 0
        self.server_errors = 0

    @property
    def base(self) -> str:
        return self.link.base(self.attempt)

    async def failed(self, what: str, server_error: bool = False) -> None:
        if server_error:
            self.server_errors += 1
            if self.server_errors >= MAX_SERVER_ERRORS:
                raise UploadFailed(f"the server kept failing: {what}", "exception")
        log.warning("artifacts: %s; trying again", what)
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**self.attempt))
        self.attempt += 1
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        self.server_errors = 0
        if self.attempt:
            self.link.preferred = (self.link.preferred + self.attempt) % len(self.link.urls)
            self.attempt = 0


# (offset, size, hash it even if known) -> (data, sha256 hex)
ReadChunk = Callable[[int, int, bool], tuple[bytes, str]]


class Uploader:
    """Uploads of one run's files through one HTTP client."""

    def __init__(self, link: ServerLink, run: str, client: httpx.AsyncClient) -> None:
        self.link = link
        self.run = run
        self.client = client
        self.retrying = Retrying(link)

    async def upload(
        self, item: Collected, read: ReadChunk, rehash: Callable[[], Awaitable[Collected]]
    ) -> Collected:
        """Store `item` on the server (resuming what it holds); the item as stored (hashed
        again when the file changed under the upload)."""
        changes = 0
        while True:
            try:
                await self._send(item, read)
                return item
            except FileChanged:
                changes += 1
                if changes >= MAX_CHANGES:
                    raise UploadFailed(
                        f"artifacts: {item.path} kept changing while it was uploaded"
                    ) from None
                item = await rehash()

    async def _send(self, item: Collected, read: ReadChunk) -> None:
        offset = await self._declare(item)
        if offset >= item.size and item.size > 0:
            return  # stored already
        prefetch: asyncio.Task[tuple[bytes, str]] | None = None
        prefetched_at = -1
        damaged = 0  # chunks refused in a row
        try:
            while True:
                length = min(CHUNK_BYTES, item.size - offset)
                if prefetch is not None and prefetched_at == offset and not damaged:
                    data, digest = await prefetch
                else:
                    if prefetch is not None:
                        prefetch.cancel()
                    # After a refusal, hashed as it is now (the file may have changed).
                    data, digest = await asyncio.to_thread(read, offset, length, bool(damaged))
                prefetch = None
                end = offset + len(data)
                if end < item.size:  # read the next chunk while this one is sent
                    prefetched_at = end
                    prefetch = asyncio.ensure_future(
                        asyncio.to_thread(read, end, min(CHUNK_BYTES, item.size - end), False)
                    )
                if self.link.pause:
                    await asyncio.sleep(self.link.pause)
                answer = await self._put(item, offset, data, digest)
                del data
                if answer == DAMAGED:
                    damaged += 1
                    if damaged > 1:  # damaged on the way: send it again after a while
                        await self.retrying.failed(f"{item.path}: the chunk arrived damaged")
                    continue
                damaged = 0
                if isinstance(answer, str):
                    if answer == GONE and item.size == 0:
                        return  # an empty file the declaration found stored already
                    # Declared again: where the server is (the chunk whose answer was lost
                    # may be in), or a new upload when it has none in progress.
                    offset = await self._declare(item)
                    if offset >= item.size and item.size > 0:
                        return
                    continue
                offset, complete = answer
                if complete or (offset >= item.size and item.size > 0):
                    return
        finally:
            if prefetch is not None:
                prefetch.cancel()

    async def _declare(self, item: Collected) -> int:
        """POST: the bytes the server holds of this file."""
        body: dict[str, Any] = {"path": item.path, "size": item.size, "sha256": item.sha256}
        if item.junit is not None:
            body["junit"] = item.junit
        while True:
            url = f"{self.retrying.base}{ROUTE}{self.run}"
            try:
                response = await self.client.post(url, json=body)
            except httpx.HTTPError as exc:
                await self.retrying.failed(f"{item.path}: {_describe(exc)}")
                continue
            status = response.status_code
            if status == 200:
                self.retrying.succeeded()
                return _offset(response, item.size)
            self._refusal(item, response)
            await self.retrying.failed(
                f"{item.path}: the server answered {status}", server_error=status >= 500
            )

    async def _put(
        self, item: Collected, offset: int, data: bytes, digest: str
    ) -> tuple[int, bool] | str:
        """PUT one chunk: the server's offset after it and whether the file is complete; GONE
        when the server has no upload of it in progress, LOST when the connection failed
        (declare it again, either way), DAMAGED when the chunk's bytes did not match its
        hash (read it again)."""
        while True:
            url = f"{self.retrying.base}{ROUTE}{self.run}"
            try:
                response = await self.client.put(
                    url,
                    params={"path": item.path, "offset": str(offset)},
                    content=_Body(data),
                    headers={
                        "X-Chunk-SHA256": digest,
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(len(data)),
                    },
                )
            except httpx.HTTPError as exc:
                await self.retrying.failed(f"{item.path}: {_describe(exc)}")
                return LOST  # the chunk may have arrived: ask before sending it again
            status = response.status_code
            if status == 200:
                self.retrying.succeeded()
                document = _json(response)
                return _offset(response, item.size), bool(document.get("complete"))
            if status == 409 and isinstance(_json(response).get("offset"), int):
                self.retrying.succeeded()
                return _offset(response, item.size), False
            if status == 404 and "in progress" in _detail(response):
                self.retrying.succeeded()
                return GONE
            if status == 422 and offset + len(data) >= item.size:
                raise FileChanged
            if status == 400:  # the chunk's bytes do not match its hash: send it again
                self.retrying.succeeded()
                return DAMAGED
            self._refusal(item, response)
            await self.retrying.failed(
                f"{item.path}: the server answered {status}", server_error=status >= 500
            )

    def _refusal(self, item: Collected, response: httpx.Response) -> None:
        """Raise UploadFailed for an answer that ends the upload."""
        status = response.status_code
        detail = _detail(response)
        if status == 413:
            raise UploadFailed(f"artifacts: {item.path} refused: {detail or 'too large'}")
        if status == 401:
            raise UploadFailed("artifacts: the server refused the worker's token", "exception")
        if status in (403, 404):
            raise UploadFailed(
                f"artifacts: the server refused the upload of {item.path}: "
                f"{detail or 'the run is no longer this worker' + chr(39) + 's'}",
                "exception",
            )
        if 400 <= status < 500 and status != 429:
            raise UploadFailed(
                f"artifacts: the server refused {item.path} ({status}): {detail}", "exception"
            )


class _Body:
    """A chunk as a request's body that lets go of its bytes once they are sent: httpx's
    requests and responses refer to each other, and stay in memory until the garbage
    collector's next pass, each with its chunk, were it kept (memory would grow by hundreds of
    MiB over a large file)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data, self.data = self.data, b""
        yield data


def read_chunk(descriptor: int, known: list[str] | None = None) -> ReadChunk:
    """Reading `size` bytes at `offset` of an open file, with their SHA-256: the one `known`
    from the collection for that chunk (worker/artifacts.py), unless `fresh` is asked."""

    def read(offset: int, size: int, fresh: bool = False) -> tuple[bytes, str]:
        data = os.pread(descriptor, size, offset)
        index, within = divmod(offset, CHUNK_BYTES)
        if known and not fresh and not within and index < len(known):
            return data, known[index]
        return data, hashlib.sha256(data).hexdigest()

    return read


def _offset(response: httpx.Response, size: int) -> int:
    value = _json(response).get("offset")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= size:
        raise UploadFailed(f"the server answered an offset out of the file: {value!r}", "exception")
    return value


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _detail(response: httpx.Response) -> str:
    detail = _json(response).get("detail")
    if isinstance(detail, str):
        return detail[:1000]
    return "" if detail is None else str(detail)[:1000]


def _describe(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def quoted(path: str) -> str:
    """An artifact's path in a URL (its `/` kept)."""
    return quote(path, safe="/")
