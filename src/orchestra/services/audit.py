"""The audit log: who changed what, through the API or the website, and when.

One row per change that succeeded: the user, the method, the route and the path it named, the
answer's status and the client's address; never a body (so never a secret). Read by auditors
and administrators, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestra.clock import Clock
from orchestra.domain.identifiers import check_identifier
from orchestra.domain.pages import Listing
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import audit_event

MAX_PATH = 2000


@dataclass(frozen=True)
class AuditEvent:
    identifier: int
    date: datetime
    actor: str | None
    method: str
    route: str
    path: str
    status: int
    address: str | None


class AuditService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def record(
        self,
        *,
        actor: str | None,
        method: str,
        route: str,
        path: str,
        status: int,
        address: str | None,
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.insert(audit_event).values(
                    date=self.clock.now(),
                    actor=actor,
                    method=method,
                    route=route[:MAX_PATH],
                    path=path[:MAX_PATH],
                    status=status,
                    address=None if address is None else address[:100],
                )
            )

    async def list_events(
        self, *, actor: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> Listing[AuditEvent]:
        query: Any = sa.select(audit_event)
        if actor is not None:
            query = query.where(audit_event.c.actor == check_identifier(actor, "actor"))
        async with self.db.read() as conn:
            found = await records.page(
                conn,
                query,
                [audit_event.c.identifier],
                cursor,
                limit,
                descending=True,
                types=(int,),
            )
        return found.map(lambda row: AuditEvent(**row))
