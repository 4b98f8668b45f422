"""The master's WebSocket protocol takes heartbeat frames in place once told to (after the
worker's hello), and hands every other frame to the application as uvicorn does."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

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


HANDSHAKE = (
    b"GET /api/v1/workers/connect HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class Written(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = b""

    def write(self, data: Any) -> None:
        self.data += bytes(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def client_frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True, extensions=[])


def test_heartbeat_frames_read_from_the_socket_never_reach_the_application() -> None:
    """Through the real frame parser: after the hello, a heartbeat read whole, split in two
    reads or beside another frame sets `last_heartbeat` and is not queued; other frames are."""

    async def scenario() -> None:
        received: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            while True:
                event = await receive()
                if event["type"] != "websocket.receive":
                    return
                received.append(event["text"])

        config = Config(app=app, ws=WorkerWebSocketProtocol)
        config.load()
        protocol = WorkerWebSocketProtocol(config, ServerState(), {})
        transport = Written()
        protocol.connection_made(transport)
        protocol.data_received(HANDSHAKE)

        async def settle() -> None:
            for _ in range(20):
                await asyncio.sleep(0)

        await settle()
        assert transport.data.startswith(b"HTTP/1.1 101")
        hello = '{"type":"hello"}'  # not parsed here: only its way through the protocol
        protocol.data_received(client_frame(hello))
        await settle()
        assert received == [hello]
        assert heartbeats_in_place(protocol.receive) is protocol

        parsed = protocol.conn.parser
        heartbeat = client_frame('{"type":"heartbeat"}')
        protocol.data_received(heartbeat)
        assert protocol.last_heartbeat > 0 and protocol.queue.empty()

        report = client_frame('{"type":"capacity","accepting":true}')
        protocol.data_received(report[:2])
        protocol.data_received(report[2:])
        await settle()
        assert received == [hello, '{"type":"capacity","accepting":true}']

        # A heartbeat in two reads, or beside another frame, is not the application's either.
        protocol.last_heartbeat = 0.0
        protocol.data_received(heartbeat[:3])
        protocol.data_received(heartbeat[3:])
        assert protocol.last_heartbeat > 0
        protocol.last_heartbeat = 0.0
        protocol.data_received(heartbeat + client_frame('{"type": "heartbeat"}'))
        await settle()
        assert protocol.last_heartbeat > 0 and len(received) == 2
        assert protocol.conn.parser is parsed and protocol.conn.parser_exc is None
        protocol.connection_lost(None)
        await settle()

    asyncio.run(scenario())
