"""The master's WebSocket server protocol: uvicorn's sans-I/O one, taking heartbeats in place.

A heartbeat only says that the connection is alive. uvicorn queues every message for the
application, pausing the socket's reading until the application takes it, and the reader task
wakes to find a heartbeat: with 1,000 workers, 200 a second, that was most of an idle master's
CPU. Once the master has the worker's hello, it asks the protocol to take heartbeat frames
itself: they only set `last_heartbeat` (the event loop's time), which the master's silence
watchdog reads; a read that is exactly one heartbeat frame skips the frame parser too. Every
other frame (and any frame before the hello) goes the usual way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.protocol import State
from websockets.streams import StreamReader

from orchestra.protocol.messages import HEARTBEAT_FRAME_BYTES

try:  # the C version, as websockets' own frame parser uses
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

_LONGEST = max(len(f) for f in HEARTBEAT_FRAME_BYTES)
# A heartbeat alone in a read, as a client sends it: FIN and text, masked, a 7-bit length.
_FRAME_SIZES = frozenset(6 + len(f) for f in HEARTBEAT_FRAME_BYTES)
_AT_EOF = StreamReader.at_eof.__code__  # where the frame parser waits between frames


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

    def data_received(self, data: bytes) -> None:
        # Most reads of an idle worker's connection are one whole heartbeat frame: taken here,
        # the frame parser (Python, a generator per frame) does not run for it, which is
        # safe only when the parser waits for the start of a frame with nothing buffered.
        if (
            self.heartbeats_in_place
            and len(data) in _FRAME_SIZES
            and data[0] == 0x81
            and data[1] == 0x80 | (len(data) - 6)
            and self._between_frames()
            and bytes(apply_mask(data[6:], data[2:6])) in HEARTBEAT_FRAME_BYTES
        ):
            self.last_heartbeat = self.loop.time()
            return
        super().data_received(data)

    def _between_frames(self) -> bool:
        """The frame parser has consumed every byte received and waits for a new frame (not
        in a fragmented message, not closing): False whenever unsure."""
        conn = self.conn
        if (
            self.close_sent
            or conn.state is not State.OPEN
            or conn.current_size is not None
            or conn.reader.buffer
        ):
            return False
        waiting = conn.parser  # the handshake's parser, then the frames' (yield from)
        while (inner := getattr(waiting, "gi_yieldfrom", None)) is not None:
            waiting = inner
        return getattr(waiting, "gi_code", None) is _AT_EOF

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
