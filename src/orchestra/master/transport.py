"""The master's WebSocket server protocol: uvicorn's sans-I/O one, taking heartbeats in place.

A heartbeat only says that the connection is alive. uvicorn queues every message for the
application, pausing the socket's reading until the application takes it, and the reader task
wakes to find a heartbeat: with 1,000 workers, 200 a second, that was most of an idle master's
CPU. Once the master has the worker's hello, it asks the protocol to take heartbeat frames
itself: they only set `last_heartbeat` (the event loop's time), which the master's silence
watchdog reads. Every other frame (and any frame before the hello) goes the usual way.

It subclasses uvicorn's sans-I/O protocol and reads the `websockets` connection under it, so
pyproject.toml bounds both to the versions its tests pass on. Measured for it
(docs/performance.md): an idle master with 1,000 workers, 4.3% of a core to 3.4% for taking
heartbeats in place; and `send_soon`, one write for a pass's assignments to a worker and for a
finished run's acknowledgement with the next assignment. A read of one heartbeat frame also
skipped the frame parser until session 9: within the noise, so it went.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from orchestra.protocol.messages import HEARTBEAT_FRAME_BYTES

_LONGEST = max(len(f) for f in HEARTBEAT_FRAME_BYTES)


class WorkerWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeats_in_place = False
        self.last_heartbeat = 0.0
        self._flush_timer: asyncio.TimerHandle | None = None

    def send_soon(self, text: str, delay: float) -> bool:
        """Queue a text frame to go out in the same write as the next frame sent, or on its own
        after `delay` seconds at the latest (a write is a system call and wakes the worker:
        about 100 us of CPU on this machine). False if the connection cannot take it."""
        if not self.handshake_complete or self.initial_response is not None:
            return False
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        if self._flush_timer is None:
            self._flush_timer = self.loop.call_later(delay, self._flush)
        return True

    async def send(self, message: Any) -> None:
        await super().send(message)  # writes all the connection holds, queued frames first
        if self._flush_timer is not None:
            self._flush_timer.cancel()  # what it waited for went with this one
            self._flush_timer = None

    def _flush(self) -> None:
        """Write what send_soon queued, unless a frame sent since took it along (uvicorn's
        send writes everything the connection holds)."""
        self._flush_timer = None
        output = self.conn.data_to_send()
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))

    def send_receive_event_to_app(self) -> None:
        frames = self.frames
        if (
            self.heartbeats_in_place
            and self.curr_msg_data_type == "text"
            and len(frames) == 1
            and len(frames[0]) <= _LONGEST
            and bytes(frames[0]) in HEARTBEAT_FRAME_BYTES
            and not self.close_sent
        ):
            self.frames = []
            self.last_heartbeat = self.loop.time()
            return
        super().send_receive_event_to_app()


def heartbeats_in_place(receive: Any) -> WorkerWebSocketProtocol | None:
    """The protocol behind an ASGI `receive` callable, told to take heartbeats itself; None
    when the server runs another protocol (tests' in-process clients, another ws setting)."""
    protocol = getattr(receive, "__self__", None)
    if not isinstance(protocol, WorkerWebSocketProtocol):
        return None
    protocol.heartbeats_in_place = True
    return protocol
