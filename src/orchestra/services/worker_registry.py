"""The workers connected to this master, as the database knows them: a connecting worker's
record and the decisions on the runs it says it holds (reconciliation), its liveness lease
(vouching), and its going.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock, utcnow
from orchestra.errors import Conflict, Forbidden
from orchestra.protocol import messages as m
from orchestra.services.events import Events
from orchestra.services.run_endings import RunEndings
from orchestra.storage import running
from orchestra.storage import workers as worker_storage
from orchestra.storage.engine import Database

# The user of `orchestra server --workers N`'s local workers (server.py): approved at their
# first connection, even where new workers wait for an administrator's approval.
LOCAL_WORKER_USER = "local-worker"


class WorkerRegistry:
    def __init__(
        self, db: Database, clock: Clock, events: Events, endings: RunEndings, master: str
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.endings = endings
        self.master = master

    async def register(
        self,
        owner: str,
        hello: m.Hello,
        *,
        reconcile: bool = False,
        live_for: float = 0.0,
        require_approval: bool = False,
    ) -> tuple[bool, dict[str, m.RunDecision] | None]:
        """Create or update the worker record for a connecting worker; returns whether it may
        take runs (enabled and approved), and with `reconcile` the decisions on the runs it
        holds, made in the same transaction (see `reconcile`). A worker identifier that
        belongs to another user is refused (Forbidden), and so is one connected to another
        master that vouched for it within `live_for` seconds (Conflict). With
        `require_approval` a new identifier is recorded unapproved."""
        now = self.clock.now()
        values = {
            "owner": owner,
            "version": hello.version,
            "display_name": hello.display_name,
            "properties": dict(hello.properties),
            "executors": hello.executors,
            "is_active": True,
            "should_disconnect": False,
            "master": self.master,
            "last_seen_date": now,
        }
        decisions = None
        requeued = False
        async with self.db.transaction() as conn:
            row = await worker_storage.lock(conn, hello.identifier)
            if row is None:
                # A concurrent registration of the same identifier (another master) fails
                # this one on the key: the connection closes and the worker comes back.
                stamp = utcnow()  # as records.insert dates rows: the wall clock
                is_approved = not require_approval or owner == LOCAL_WORKER_USER
                values.update(
                    creation_date=stamp, update_date=stamp, is_enabled=True, is_approved=is_approved
                )
                await worker_storage.insert(conn, hello.identifier, values)
                is_enabled = is_approved
            else:
                if row["owner"] != owner:
                    raise Forbidden(f"worker {hello.identifier!r} belongs to another user")
                if self._live_elsewhere(row, now - timedelta(seconds=live_for)):
                    raise Conflict(
                        f"worker {hello.identifier!r} is connected to another master; "
                        "a second connection is refused"
                    )
                await worker_storage.update(conn, hello.identifier, values)
                is_enabled = bool(row["is_enabled"]) and bool(row["is_approved"])
            if reconcile:
                decisions, requeued = await self._reconcile_in(conn, hello.identifier, hello.runs)
        if requeued:
            self.events.publish("dispatch")
        return is_enabled, decisions

    def _live_elsewhere(self, row: Mapping[str, Any], vouched_after: datetime) -> bool:
        """Whether another master holds the worker's connection and vouched for it lately
        (a master vouches every heartbeat interval; one that died stops)."""
        master, seen = row["master"], row["last_seen_date"]
        return (
            bool(row["is_active"])
            and master is not None
            and master != self.master
            and seen is not None
            and seen > vouched_after
        )

    async def reconcile(self, worker: str, reported: Sequence[str]) -> dict[str, m.RunDecision]:
        """Compare the runs a reconnecting worker holds with what the database says.

        A run still running on this worker resumes from the last event applied. A run the
        master has given up on (or that belongs elsewhere) is discarded by the worker. A run
        assigned to this worker that it does not know never reached it: it goes back to
        pending, which cannot run it twice because nothing ran."""
        async with self.db.transaction() as conn:
            decisions, requeued = await self._reconcile_in(conn, worker, reported)
        if requeued:
            self.events.publish("dispatch")
        return decisions

    async def _reconcile_in(
        self, conn: AsyncConnection, worker: str, reported: Sequence[str]
    ) -> tuple[dict[str, m.RunDecision], bool]:
        """The decisions, and whether a run changed state (went back to pending, or was given
        up on and maybe retried): the dispatcher is signalled after the commit then."""
        decisions: dict[str, m.RunDecision] = {}
        requeued = False
        mine = await running.held_by(conn, worker)
        for run_id in reported:
            row = mine.get(run_id)
            if row is not None:
                decisions[run_id] = m.RunDecision(
                    action="resume", acknowledged=row["event_sequence"]
                )
            else:
                decisions[run_id] = m.RunDecision(
                    action="discard", reason="the master no longer expects this run here"
                )
        for run_id, row in mine.items():
            if run_id in decisions:
                continue
            if row["event_sequence"] == 0:
                await self.endings.requeue(conn, run_id)
                requeued = True
            else:
                await self.endings.give_up(
                    conn, run_id, f"worker {worker} came back without this run (journal lost)"
                )
                requeued = True
        return decisions, requeued

    async def disconnected(self, worker: str) -> None:
        async with self.db.transaction() as conn:
            await worker_storage.disconnected(conn, worker, self.master, self.clock.now())

    async def vouch(self, workers: Iterable[str]) -> None:
        """Record that these workers are connected here now (their liveness lease)."""
        identifiers = list(workers)
        if not identifiers:
            return
        async with self.db.transaction() as conn:
            await worker_storage.vouch(conn, identifiers, self.master, self.clock.now())
