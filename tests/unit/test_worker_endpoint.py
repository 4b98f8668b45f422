"""`orchestra server` hands a worker's connection straight to the master, and every other
request (other WebSocket paths, HTTP, the lifespan) to the web application."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from orchestra.master_mount import WORKER_PATH, WorkerEndpointFirst


class FakeMaster:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def connect(self, websocket: Any, receive: Any = None) -> None:
        self.paths.append(websocket.scope["path"])


class FakeApp:
    def __init__(self) -> None:
        self.state = SimpleNamespace()
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append((scope["type"], scope.get("path", "")))


async def _receive() -> dict[str, Any]:
    return {}


async def _send(_message: Any) -> None:
    pass


def scope(kind: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": kind, "path": path, "root_path": root_path, "headers": []}


def test_worker_connections_go_to_the_master_and_the_rest_to_the_application() -> None:
    app, master = FakeApp(), FakeMaster()
    served = WorkerEndpointFirst(app)  # type: ignore[arg-type]

    async def scenario() -> None:
        # Before the lifespan started the master, the application answers.
        await served(scope("websocket", WORKER_PATH), _receive, _send)
        app.state.master = master
        await served(scope("websocket", WORKER_PATH), _receive, _send)
        await served(scope("websocket", "/prefix" + WORKER_PATH, "/prefix"), _receive, _send)
        await served(scope("websocket", WORKER_PATH + "/x"), _receive, _send)
        await served(scope("http", WORKER_PATH), _receive, _send)
        await served({"type": "lifespan"}, _receive, _send)

    asyncio.run(scenario())
    assert master.paths == [WORKER_PATH, "/prefix" + WORKER_PATH]
    assert app.seen == [
        ("websocket", WORKER_PATH),
        ("websocket", WORKER_PATH + "/x"),
        ("http", WORKER_PATH),
        ("lifespan", ""),
    ]
