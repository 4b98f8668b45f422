"""The master: a small supervisor over the parts that carry a run through its life.

- `endpoint.WorkerEndpoint`: workers' connections, their registration and their reports;
- `dispatcher.Dispatcher`: pending runs given to free executors;
- `control.ControlLoop`: aborts, disconnects, revoked credentials;
- `upkeep.Upkeep`: leases and expiry, schedules, retention.

Five loops run beside the connections: dispatch, control, maintenance, schedules and
retention. The database is the only shared state: a master can die at any point and another
can carry on from what is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from orchestra.master.control import ControlLoop
from orchestra.master.dispatcher import Dispatcher
from orchestra.master.endpoint import WorkerEndpoint
from orchestra.master.notifications import NotificationLoops
from orchestra.master.pipelines import PipelineLoop
from orchestra.master.session import Sessions
from orchestra.master.upkeep import Upkeep
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.master_side import MasterSide
from orchestra.services.notification_relay import RunView

log = logging.getLogger(__name__)
RETRY_INTERVAL = 1.0  # a loop that failed starts again after this


def master_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Master:
    def __init__(self, services: Services, run_view: RunView | None = None) -> None:
        self.services = services
        self.identity = master_identity()
        side = MasterSide.build(services, self.identity)
        self.sessions: Sessions = {}
        self.dispatcher = Dispatcher(
            services.settings, services.events, self.sessions, side.dispatching, side.run_secrets
        )
        self.endpoint = WorkerEndpoint(
            services,
            self.sessions,
            side.registry,
            side.reports,
            side.control,
            self.dispatcher.has_backlog,
        )
        self.control = ControlLoop(services, self.sessions, side.control)
        self.upkeep = Upkeep(services, self.sessions, side.registry, side.leases, side.retention)
        self.pipelines = PipelineLoop(services)
        # run_view: a run as the API shows it (the notifications' payloads), from master_mount.
        self.notifications = NotificationLoops(services, self.identity, run_view)
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self, websocket: WebSocket, receive: Any = None) -> None:
        await self.endpoint.connect(websocket, receive)

    async def start(self) -> None:
        loops = {
            "dispatch": self.dispatcher.loop,
            "control": self.control.loop,
            "maintenance": self.upkeep.maintenance,
            "schedules": self.upkeep.schedules,
            "retention": self.upkeep.retention_sweep,
            "pipelines": self.pipelines.loop,
            "notifications-relay": self.notifications.relay_loop,
            "notifications-send": self.notifications.send_loop,
        }
        for name, loop in loops.items():
            self._tasks.append(asyncio.create_task(self._forever(loop, name), name=name))
        log.info("master %s started", self.identity)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.notifications.close()
        for session in list(self.sessions.values()):
            await session.close(m.CLOSE_SERVICE_RESTART, "master shutting down")
        log.info("master %s stopped", self.identity)

    async def _forever(self, step: Callable[[], Awaitable[None]], name: str) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("master loop %s failed; retrying", name)
                await asyncio.sleep(RETRY_INTERVAL)
