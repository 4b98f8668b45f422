"""Workers from the users' side: list, show, enable, disable, approve, rename, disconnect,
delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.identifiers import check_text
from orchestra.domain.models import Worker
from orchestra.domain.pages import Listing
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services.events import Events
from orchestra.storage import records
from orchestra.storage import workers as worker_storage
from orchestra.storage.engine import Database
from orchestra.storage.schema import worker as worker_table

WORKER_FIELDS = frozenset({"is_enabled", "is_approved", "display_name"})


class WorkerService:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.events = events

    async def list_workers(self, cursor: str | None, limit: int | None) -> Listing[Worker]:
        async with self.db.read() as conn:
            found = await records.page(
                conn, sa.select(worker_table), [worker_table.c.identifier], cursor, limit
            )
        return found.map(Worker.from_row)

    async def get_worker(self, identifier: str) -> Worker:
        async with self.db.read() as conn:
            return await self._worker(conn, identifier)

    async def _worker(self, conn: AsyncConnection, identifier: str) -> Worker:
        row = await records.fetch_one(conn, worker_table, {"identifier": identifier})
        if row is None:
            raise NotFound(f"no worker {identifier!r}")
        return Worker.from_row(row)

    async def update_worker(self, identifier: str, changes: Mapping[str, Any]) -> Worker:
        unknown = sorted(set(changes) - WORKER_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown or read-only fields: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        if changes.get("display_name") is not None:
            values["display_name"] = check_text(changes["display_name"], "display_name")
        for flag in ("is_enabled", "is_approved"):
            if changes.get(flag) is not None:
                if not isinstance(changes[flag], bool):
                    raise InvalidInput(f"{flag} must be true or false")
                values[flag] = changes[flag]
        async with self.db.transaction() as conn:
            await self._worker(conn, identifier)
            await records.update(conn, worker_table, {"identifier": identifier}, values)
            await worker_storage.changed(conn, [identifier])
            worker = await self._worker(conn, identifier)
        self.events.publish("control")
        self.events.publish("dispatch")
        return worker

    async def disconnect(self, identifier: str) -> Worker:
        """Ask the master holding this worker to close its connection."""
        async with self.db.transaction() as conn:
            await self._worker(conn, identifier)
            await records.update(
                conn, worker_table, {"identifier": identifier}, {"should_disconnect": True}
            )
            await worker_storage.changed(conn, [identifier])
            worker = await self._worker(conn, identifier)
        self.events.publish("control")
        return worker

    async def delete_worker(self, identifier: str) -> None:
        async with self.db.transaction() as conn:
            worker = await self._worker(conn, identifier)
            if worker.is_active:
                raise Conflict(f"worker {identifier!r} is connected; disconnect it first")
            await records.delete(conn, worker_table, {"identifier": identifier})
            await worker_storage.changed(conn, [identifier])
