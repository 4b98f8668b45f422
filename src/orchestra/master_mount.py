"""A Master mounted in the web application: its endpoint, and its loops in the lifespan.

The composition of two layers that know nothing of each other (master/ and web/), beside
`server.py`, which builds the process."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.types import Receive, Scope, Send

from orchestra.master.supervisor import Master
from orchestra.services.container import Services
from orchestra.web.api.runs import run_fields
from orchestra.web.app import Hook
from orchestra.web.permissions import API

WORKER_PATH = f"{API}/workers/connect"


def master_parts(services: Services) -> tuple[list[Hook], list[Hook], list[APIRouter]]:
    master = Master(services, run_view=run_fields)
    router = APIRouter(prefix=API, tags=["workers"])

    @router.websocket("/workers/connect")
    async def connect(websocket: WebSocket) -> None:
        await master.connect(websocket)

    async def start(app: FastAPI) -> None:
        app.state.master = master
        await master.start()

    async def stop(_app: FastAPI) -> None:
        await master.stop()

    return [start], [stop], [router]


class WorkerEndpointFirst:
    """The application `orchestra server` serves: a worker's connection goes straight to the
    master, everything else to the web application (where the same endpoint is routed too,
    for its permission entry, its documentation and in-process clients).

    Through the application, each connection went through its middleware, the route matching
    of every router and FastAPI's dependency solving before the master saw it: about a
    tenth of the master's CPU when a thousand workers register at once, and the first one
    built FastAPI's context of every route (half a second). The master authenticates and
    authorises the connection itself either way."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _route_path(scope) == WORKER_PATH:
            master: Master | None = getattr(self.app.state, "master", None)
            if master is not None:
                await master.connect(WebSocket(scope, receive, send), receive)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
