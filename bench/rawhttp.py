"""A minimal HTTP/1.1 keep-alive client over asyncio streams, for load generators (W2's
triggers, the proof suite's 200-client load test).

httpx is the client everywhere else, but its own cost grows with concurrency: on this 2-core
machine, 200 concurrent httpx clients in one process made about 15 requests a second against a
server that answers about 200 a second to 200 raw connections, and in W2 its CPU was taken
from the server it measured. This client does one request at a time per connection, with
Content-Length or chunked bodies, and nothing else (no redirects, no TLS, no compression).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One kept-alive connection to `base_url`, sending `headers` with every request."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"{self._headers}Content-Length: {len(payload)}\r\n"
            + ("Content-Type: application/json\r\n" if body is not None else "")
            + "\r\n"
        )
        self._writer.write(head.encode() + payload)
        try:
            return await self._read_response(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise

    async def _read_response(self, reader: asyncio.StreamReader) -> Response:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = bytearray(await reader.readexactly(int(fields.get("content-length", "0"))))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, bytes(body))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None
