"""Helpers of the notifications tests: runs moved through their statuses with the storage
functions the master uses (each change logged), and the relay and sender of one test."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestra.domain.models import RunStatus
from orchestra.notify_settings import NotifySettings
from orchestra.services.container import Services
from orchestra.services.notification_relay import NotificationRelay
from orchestra.services.notification_sender import NotificationSender
from orchestra.storage import runs as run_storage

API = "/api/v1"
SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="  # base64 of "secret-key-for-tests"
URL = f"{API}/projects/p/notifications"
JOB = {"steps": [{"name": "a", "command": ["true"]}]}


async def new_run(services: Services, job: str = "j") -> str:
    run = await services.runs.trigger("p", job, {}, {"type": "api", "user": "admin"})
    return run.identifier


async def move(
    services: Services, run: str, *statuses: RunStatus, reason: str | None = None
) -> None:
    """Move the run through these statuses, one transaction each."""
    for status in statuses:
        async with services.db.transaction() as conn:
            values: dict[str, Any] = {"update_date": services.clock.now()}
            if status is RunStatus.RUNNING:
                values["start_date"] = services.clock.now()
            else:
                values.update(completion_date=services.clock.now(), reason=reason)
            assert await run_storage.set_run_status(conn, run, status, values)


def parts(services: Services, **settings: Any) -> tuple[NotificationRelay, NotificationSender]:
    """A relay and a sender whose retries come due at once."""
    relay = NotificationRelay(services.db, services.clock, services.events)
    options = {"first_retry": 0.01, "timeout": 5.0, **settings}
    sender = NotificationSender(
        services.db, services.clock, services.keyring, NotifySettings(**options), "test"
    )
    return relay, sender


async def drain(relay: NotificationRelay, sender: NotificationSender, rounds: int = 50) -> None:
    """Relay everything, then send until nothing is due within a second."""
    while await relay.tick():
        pass
    for _ in range(rounds):
        if not await sender.tick():
            due_in = await sender.next_due_in(1.0)
            if due_in >= 1.0:
                return
            await asyncio.sleep(due_in + 0.01)
