"""One worker's connection, as the master holding it sees it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from orchestra.domain.matching import worker_matches
from orchestra.master.transport import WorkerWebSocketProtocol
from orchestra.protocol import messages as m

# How long a frame sent with `send_soon` waits, at most, for another to go out with (one write
# for both): an assignment for the next of its pass, a finished run's acknowledgement for the
# freed executor's next assignment.
RIDE_SECONDS = 0.02


@dataclass(eq=False)
class WorkerSession:
    identifier: str
    owner: str
    properties: dict[str, Any]
    executors: int
    websocket: WebSocket
    token: str | None = None  # the credential it connected with, checked again while open
    is_enabled: bool = True  # enabled and approved: it may take runs
    accepting: bool = True  # the worker says it can take runs (its disk has room)
    draining: bool = False
    assigned: set[str] = field(default_factory=set)
    aborts_sent: set[str] = field(default_factory=set)
    last_seen: float = 0.0  # the event loop's time of the last frame received
    closing: bool = False  # the connection is going: apply no more of its reports
    transport: WorkerWebSocketProtocol | None = None  # the server's protocol, when it is ours
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def free(self) -> int:
        if not self.is_enabled or self.draining or not self.accepting:
            return 0
        return max(0, self.executors - len(self.assigned))

    def last_heard(self) -> float:
        """The event loop's time of the last frame or heartbeat received (infinity while
        the worker's reports wait for the database: that is no silence of the worker's)."""
        transport = self.transport
        if transport is not None and transport.last_heartbeat > self.last_seen:
            return transport.last_heartbeat
        return self.last_seen

    def matches(self, job_properties: dict[str, Any]) -> bool:
        return worker_matches(job_properties, self.properties)

    async def send(self, message: m.Message) -> bool:
        """Send a message; False if the connection is gone."""
        if self.websocket.client_state is not WebSocketState.CONNECTED:
            return False
        try:
            async with self._send_lock:
                await self.websocket.send_text(m.encode(message))
        except (RuntimeError, OSError):
            return False
        except Exception as exc:  # the transport's own closed-connection errors
            if type(exc).__name__ in (
                "WebSocketDisconnect",
                "ClientDisconnected",
                "ConnectionClosed",
            ):
                return False
            raise
        return True

    async def send_soon(self, message: m.Message, delay: float) -> bool:
        """Send a message that may wait up to `delay` seconds to go out with the next one (one
        write for both); at once where the transport cannot hold it. False if the connection
        is gone."""
        transport = self.transport
        if transport is not None and self.websocket.client_state is WebSocketState.CONNECTED:
            if transport.send_soon(m.encode(message), delay):
                return True
        return await self.send(message)

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.client_state is WebSocketState.CONNECTED:
            try:
                await self.websocket.close(code=code, reason=reason[:120])
            except (RuntimeError, OSError):
                pass


# The connections a master holds, by worker identifier: shared by its endpoint (which adds and
# removes them), its dispatcher and its control loop.
Sessions = dict[str, WorkerSession]
