"""Request body limit: a 413 before a large body is read, whether it says its length or not."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The artifact upload routes take chunks of up to 16 MiB (domain/artifacts.py MAX_CHUNK).
UPLOADS = "/api/v1/artifact-uploads/"
MAX_UPLOAD_CHUNK = 16 << 20


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(UPLOADS) and self.max_bytes < MAX_UPLOAD_CHUNK:
            # An artifact's chunk (web/api/artifacts.py) may be larger than other bodies.
            await BodyLimit(self.app, MAX_UPLOAD_CHUNK)(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await _refuse(send, self.max_bytes)
                    return
        received = 0
        started = False
        exceeded = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, refused
            if refused:
                return
            if exceeded and not started:
                # The framework may catch _TooLarge while parsing the body and answer with its
                # own error (FastAPI says 400): the client gets the 413 instead.
                refused = started = True
                await _refuse(send, self.max_bytes)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _refuse(send, self.max_bytes)


class _TooLarge(Exception):
    pass


async def _refuse(send: Send, max_bytes: int) -> None:
    body = json.dumps({"detail": f"the request body is larger than {max_bytes} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
