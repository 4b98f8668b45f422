"""Wire a Master into the web application: its endpoint, and its loops in the lifespan."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, WebSocket

from orchestra.master.hub import Master
from orchestra.services.container import Services
from orchestra.web.app import Hook
from orchestra.web.permissions import API


def master_parts(services: Services) -> tuple[list[Hook], list[Hook], list[APIRouter]]:
    master = Master(services)
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
