"""A raw worker-protocol client over the `websockets` library: hand-written frames, for fuzzing
the master and for storms of lightweight workers (hello and heartbeats, no jobs). The message
shapes follow src/orchestra/protocol/messages.py (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = 1


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://", 1).rstrip("/") + "/api/v1/workers/connect"


async def open_connection(
    url: str, token: str, *, origin: str | None = None, max_size: int | None = 2**25
) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"}
    if origin is not None:
        headers["Origin"] = origin
    return await connect(
        ws_url(url),
        additional_headers=headers,
        max_size=max_size,
        open_timeout=30,
        ping_interval=None,
        close_timeout=5,
    )


def hello(identifier: str, runs: list[str] | None = None, **fields: Any) -> str:
    message = {
        "type": "hello",
        "protocol": PROTOCOL,
        "identifier": identifier,
        "display_name": identifier,
        "version": "proof",
        "properties": {"kind": "raw"},
        "executors": 1,
        "runs": runs or [],
        **fields,
    }
    return json.dumps(message)


HEARTBEAT = json.dumps({"type": "heartbeat"})


async def welcomed(connection: ClientConnection, identifier: str) -> dict[str, Any]:
    """Say hello and return the master's welcome."""
    await connection.send(hello(identifier))
    welcome = json.loads(await asyncio.wait_for(connection.recv(), 30))
    assert welcome["type"] == "welcome", welcome
    return dict(welcome)


async def closed_with(
    connection: ClientConnection, timeout: float = 15.0
) -> tuple[int | None, str]:
    """Wait for the master to close the connection; (close code, reason). Messages the master
    sends meanwhile are read and ignored. (None, "") if the connection ended without a close
    frame; a TimeoutError if it stays open."""

    async def drain() -> tuple[int | None, str]:
        try:
            while True:
                await connection.recv()
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                return None, ""
            return exc.rcvd.code, exc.rcvd.reason

    return await asyncio.wait_for(drain(), timeout)
