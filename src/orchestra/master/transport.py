"""The master's WebSocket server protocol: uvicorn's sans-I/O one, taking heartbeats in place.

A heartbeat only says that the connection is alive. uvicorn queues every message for the
application, pausing the socket's reading until the application takes it, and the reader task
wakes to find a heartbeat: with 1,000 workers, 200 a second, that was most of an idle master's
CPU. Once the master has the worker's hello, it asks the protocol to take heartbeat frames
itself: they only set `last_heartbeat` (the event loop's time), which the master's silence
watchdog reads. Every other frame (and any frame before the hello) goes the usual way.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from orchestra.protocol.messages import HEARTBEAT_FRAME_BYTES

_LONGEST = max(len(f) for f in HEARTBEAT_FRAME_BYTES)


class WorkerWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeats_in_place = False
        self.last_heartbeat = 0.0

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
