"""Leases and expiry: runs nobody will finish, ended by the master.

A pending run past its expiry date is cancelled. A running run whose worker has been away
longer than the run's lease ends `exception` (and is retried if its policy says so). A worker
no master has vouched for lately is marked away (its master died). Each is a guarded change in
one transaction, so that two masters doing the same sweep change each run once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from orchestra import metrics
from orchestra.clock import Clock
from orchestra.domain.statuses import RunStatus, StepStatus
from orchestra.services import pipeline_marks
from orchestra.services.events import Events
from orchestra.services.run_endings import RunEndings
from orchestra.storage import running
from orchestra.storage import runs as run_storage
from orchestra.storage import workers as worker_storage
from orchestra.storage.engine import Database

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXPIRY_BATCH = 1000  # pending runs expired in one transaction at most


class Leases:
    def __init__(self, db: Database, clock: Clock, events: Events, endings: RunEndings) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.endings = endings

    async def expire_pending(self, max_age: float) -> int:
        """Cancel runs pending past their expiry date (the job's `expiry`, or `max_age`
        seconds)."""
        now = self.clock.now()
        cutoff = now - timedelta(seconds=max_age)
        async with self.db.transaction() as conn:
            rows = await running.expired_pending(conn, now, cutoff, EXPIRY_BATCH)
            expired = [run_id for run_id, _ in rows]
            for run_id, created in rows:
                waited = (now - created).total_seconds()
                moved = await run_storage.set_run_status(
                    conn,
                    run_id,
                    RunStatus.CANCELLED,
                    {
                        "should_cancel": True,
                        "completion_date": now,
                        "reason": f"expired: still pending after {waited:.0f} seconds",
                    },
                )
                if moved:
                    await run_storage.skip_pending_steps(conn, run_id, StepStatus.SKIPPED)
                    metrics.RUNS_EXPIRED.inc()
            marked = await pipeline_marks.runs_ended(conn, expired, now)
        for run_id in expired:
            self.events.publish(f"run:{run_id}")
        if marked:
            pipeline_marks.advance_soon(self.events)
        return len(expired)

    async def expire_leases(
        self, default_lease: float, heartbeat: float, connected: Iterable[str]
    ) -> int:
        """End `exception` the running runs whose worker has been away longer than the lease
        (the run's own, from its job, or the default). Workers connected here are present."""
        now = self.clock.now()
        present = set(connected)
        async with self.db.transaction() as conn:
            silent = await running.of_silent_workers(conn, now - timedelta(seconds=heartbeat))
            given_up = 0
            for row in silent:
                if row.worker in present:
                    continue
                lease = row.lease or default_lease
                seen = max(d for d in (row.last_seen_date, row.assignment_date, EPOCH) if d)
                if now - seen > timedelta(seconds=lease):
                    reason = f"worker {row.worker} was lost for more than {lease:g} seconds"
                    given_up += await self.endings.give_up(conn, row.identifier, reason)
            # Workers no master has vouched for lately are connected nowhere (their master died).
            await worker_storage.mark_away(conn, now - timedelta(seconds=3 * heartbeat), present)
        return given_up
