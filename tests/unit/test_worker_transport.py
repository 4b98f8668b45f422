"""The master's WebSocket protocol takes heartbeat frames in place once told to (after the
worker's hello), and hands every other frame to the application as uvicorn does."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from orchestra.master.transport import WorkerWebSocketProtocol, heartbeats_in_place


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name in ("sockname", "peername") else default


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


def text_frame(protocol: WorkerWebSocketProtocol, text: str) -> None:
    """What uvicorn does for a complete text frame, after the frame parser."""
    protocol.curr_msg_data_type = "text"
    protocol.frames = [text.encode()]
    protocol.send_receive_event_to_app()


def test_heartbeats_are_taken_in_place_only_after_hello() -> None:
    async def scenario() -> None:
        config = Config(app=_app, ws=WorkerWebSocketProtocol)
        config.load()
        protocol = WorkerWebSocketProtocol(config, ServerState(), {})
        transport = Transport()
        protocol.connection_made(transport)

        # Before the hello every frame is the application's (a heartbeat there is an error).
        text_frame(protocol, '{"type":"heartbeat"}')
        assert protocol.queue.qsize() == 1 and transport.paused == 1
        protocol.queue.get_nowait()
        protocol.read_paused = False

        assert heartbeats_in_place(protocol.receive) is protocol
        before = asyncio.get_running_loop().time()
        for frame in ('{"type":"heartbeat"}', '{"type": "heartbeat"}'):
            text_frame(protocol, frame)
        assert protocol.queue.empty() and transport.paused == 1
        assert protocol.last_heartbeat >= before

        # Anything else still goes to the application, paused until it is read.
        text_frame(protocol, '{"type":"capacity","accepting":false}')
        event = protocol.queue.get_nowait()
        assert event == {
            "type": "websocket.receive",
            "text": '{"type":"capacity","accepting":false}',
        }
        assert transport.paused == 2

    asyncio.run(scenario())


def test_another_server_protocol_is_left_alone() -> None:
    async def receive() -> dict[str, Any]:
        return {}

    assert heartbeats_in_place(receive) is None
