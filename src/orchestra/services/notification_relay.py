"""The notifications relay: change log rows (event_log) turned into deliveries.

Every master runs it; one at a time relays (the relay's row is locked for the transaction,
skipped by the others on PostgreSQL; SQLite has one writer). A batch is read after the relay's
position, the deliveries it makes are written, and the position moves, all in one
transaction: a master that dies mid-batch leaves it to the next, whole.

On PostgreSQL a row's identifier is taken when it is written and seen when its transaction
commits, so a later identifier can be seen first. The relay remembers the rows it relayed above
its position (`seen`) and does not move past a missing identifier until GAP_WAIT seconds have
passed (a transaction that rolled back never fills it).

A delivery's `event` key (run.succeeded:RUN...) makes each event one delivery per
notification, however often a change of its run is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain import notifications as rules
from orchestra.domain.models import Run
from orchestra.services.events import Events
from orchestra.services.pipeline_runs import shown as shown_pipeline_run
from orchestra.storage import notifications as store
from orchestra.storage import pipeline_runs as pipeline_store
from orchestra.storage import runs as run_storage
from orchestra.storage.engine import Database
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import schedule as schedule_table

log = logging.getLogger(__name__)
BATCH = 500
GAP_WAIT = 60.0  # seconds a missing identifier is waited for
MAX_SEEN = 5000  # rows kept above a gap before it is given up
MAX_MISSING = 1000  # missing identifiers looked up by name (more: the range is read)
NOTIFY = "notifications"  # the topic that wakes the senders
SCHEDULE_SKIPPED = store.SCHEDULE_SKIPPED  # logged where a firing is skipped (scheduler.py)
FINAL_RAN = ("succeeded", "failed", "aborted", "exception")
SCHEDULE_SHOWN = (
    "project",
    "identifier",
    "display_name",
    "job",
    "pipeline",
    "expression",
    "time_zone",
    "is_enabled",
    "overlap",
    "last_run",
    "last_fire_date",
    "last_skip_date",
    "last_skip_reason",
    "next_due_date",
)

RunView = Callable[[Run], dict[str, Any]]


def basic_run_view(run: Run) -> dict[str, Any]:
    """A run's main fields, where no view of the API's was given (tests of the relay alone)."""
    return {
        "project": run.project,
        "identifier": run.identifier,
        "job": run.job,
        "parameters": run.shown_parameters() if run.secret_parameters else run.parameters,
        "status": run.status.value,
        "reason": run.reason,
        "start_date": run.start_date,
        "completion_date": run.completion_date,
    }


def encode(event: str, date: datetime, data: Mapping[str, Any]) -> str:
    """The body sent for an event: {"type", "timestamp", "data"}."""
    return pydantic_core.to_json({"type": event, "timestamp": date, "data": data}).decode()


class NotificationRelay:
    def __init__(
        self, db: Database, clock: Clock, events: Events, run_view: RunView | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.run_view = run_view or basic_run_view

    async def tick(self) -> int:
        """Relay one batch; the number of change log rows it read (0: nothing new, or
        another master is relaying)."""
        async with self.db.read() as conn:  # no write transaction while nothing happens
            known = await store.relay_position(conn)
            newest = await store.max_log_identifier(conn)
            enabled = await store.any_enabled(conn)
        if known is not None and newest == known:
            return 0
        if not enabled:
            await self._skip()
            return 0
        made = 0
        async with self.db.transaction() as conn:
            state = await store.lock_relay(conn, await store.max_log_identifier(conn))
            if state is None:
                return 0
            position, seen = int(state["position"]), {int(i) for i in state["seen"]}
            if await store.max_log_identifier(conn) < position:
                # Identifiers went back: SQLite numbers rows from the highest kept, so a log
                # pruned empty starts again below the position. Every row there is new.
                position, seen = 0, set()
            rows = []
            if seen:  # the identifiers missing below the highest seen, if they came meanwhile
                if max(seen) - position - len(seen) <= MAX_MISSING:
                    missing = set(range(position + 1, max(seen))) - seen
                    rows = await store.log_rows_in(conn, sorted(missing))
                else:
                    found = await store.log_rows(conn, position, max(seen), len(seen) + BATCH)
                    rows = [r for r in found if r["identifier"] not in seen]
            rows += await store.log_rows(conn, max([position, *seen]), None, BATCH)
            if rows:
                made = await self._relay(conn, rows)
            seen |= {int(r["identifier"]) for r in rows}
            position, seen, gap_date = self._advance(position, seen, state["gap_date"])
            if rows or position != state["position"] or gap_date != state["gap_date"]:
                await store.save_relay(conn, position, sorted(seen), gap_date, self.clock.now())
        if made:
            self.events.publish(NOTIFY)
        return len(rows)

    async def _skip(self) -> None:
        """No notification is enabled: nothing to read, the position goes to the newest row
        (a notification saved now hears of the changes made from now on)."""
        async with self.db.transaction() as conn:
            state = await store.lock_relay(conn, await store.max_log_identifier(conn))
            if state is not None and not await store.any_enabled(conn):
                newest = await store.max_log_identifier(conn)
                await store.save_relay(conn, newest, [], None, self.clock.now())

    def _advance(
        self, position: int, seen: set[int], gap_date: datetime | None
    ) -> tuple[int, set[int], datetime | None]:
        start = position
        while position + 1 in seen:
            position += 1
            seen.discard(position)
        if not seen:
            return position, seen, None
        now = self.clock.now()
        if position != start or gap_date is None:
            return position, seen, now  # a new gap, waited for from now
        if now - gap_date < timedelta(seconds=GAP_WAIT) and len(seen) < MAX_SEEN:
            return position, seen, gap_date
        log.warning(
            "notifications relay: change log rows %d to %d never came; going on",
            position + 1,
            min(seen) - 1,
        )
        position = min(seen)
        seen.discard(position)
        return self._advance(position, seen, None)

    async def _relay(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> int:
        projects = [r["project"] for r in rows if r["project"] is not None]
        notifications = await store.notifications_of(conn, projects)
        if not notifications:
            return 0
        by_project: dict[str, list[dict[str, Any]]] = {}
        for item in notifications:
            by_project.setdefault(item["project"], []).append(item)
        deliveries: list[dict[str, Any]] = []
        read: set[tuple[str, str, str | None]] = set()
        for row in sorted(rows, key=lambda r: r["identifier"]):
            targets = by_project.get(row["project"] or "")
            if not targets:
                continue
            if row["type"] != SCHEDULE_SKIPPED:  # each skip is an event of its own
                # A run's step changes log it again with the same status: read it once.
                seen = (row["type"].split(".", 1)[0], row["subject"], row["status"])
                if seen in read:
                    continue
                read.add(seen)
            for event, key, data in await self._events(conn, row, targets):
                body = encode(event, row["date"], data)
                for target in targets:
                    job = data.get("job") if event in rules.RUN_EVENTS else None
                    pipeline = data.get("pipeline") if event in rules.PIPELINE_EVENTS else None
                    if event == rules.SCHEDULE_SKIPPED:
                        job, pipeline = data.get("job"), data.get("pipeline")
                    if rules.wants(target, event, job, pipeline):
                        deliveries.append(self._delivery(target, event, key, body))
        await store.insert_deliveries(conn, deliveries)
        return len(deliveries)

    def _delivery(
        self, target: Mapping[str, Any], event: str, key: str, body: str
    ) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "message": store.new_message(),
            "project": target["project"],
            "notification": target["identifier"],
            "event": key[:250],
            "type": event,
            "payload": body,
            "status": store.PENDING,
            "attempts": 0,
            "next_attempt_date": now,
            "creation_date": now,
            "update_date": now,
        }

    async def _events(
        self, conn: AsyncConnection, row: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """The events a change log row makes, each with its key and data, if a target may
        want it (nothing is read for events nobody listens to)."""
        wanted = {e for t in targets for e in t["events"]}
        kind, subject, status = row["type"], row["subject"], row["status"]
        if kind.startswith("run."):
            return await self._run_events(conn, subject, status, wanted)
        if kind.startswith("pipeline_run."):
            return await self._pipeline_events(conn, row["project"], subject, status, wanted)
        if kind == SCHEDULE_SKIPPED and rules.SCHEDULE_SKIPPED in wanted:
            found = await conn.execute(
                sa.select(schedule_table).where(
                    schedule_table.c.project == row["project"],
                    schedule_table.c.identifier == subject,
                )
            )
            schedule = found.mappings().first()
            if schedule is None:
                return []
            data = {k: schedule[k] for k in SCHEDULE_SHOWN}
            return [(rules.SCHEDULE_SKIPPED, f"schedule.skipped:{row['identifier']}", data)]
        return []

    async def _run_events(
        self, conn: AsyncConnection, subject: str, status: str | None, wanted: set[str]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        events = [e for e in rules.run_events(status) if e in wanted]
        ended = status in FINAL_RAN
        if ended and rules.RUN_STARTED in wanted:
            events.insert(0, rules.RUN_STARTED)  # its start and end were logged as one row
        if status == "succeeded" and rules.RUN_FIXED in wanted:
            events.append(rules.RUN_FIXED)
        if not events:
            return []
        run = await run_storage.get_run(conn, subject)
        if run is None:
            return []
        if run.start_date is None and rules.RUN_STARTED in events:
            events.remove(rules.RUN_STARTED)
        if rules.RUN_FIXED in events and not rules.is_fixed(
            run.status.value, await self._previous_final(conn, run)
        ):
            events.remove(rules.RUN_FIXED)
        data = self.run_view(run)
        return [(event, f"{event}:{run.identifier}", data) for event in events]

    async def _previous_final(self, conn: AsyncConnection, run: Run) -> str | None:
        """The status of the job's run that ended last before this one, among those that
        ran to an end (a cancelled run never ran)."""
        if run.completion_date is None:
            return None
        ended = run_table.c.completion_date
        query = (
            sa.select(run_table.c.status)
            .where(
                run_table.c.project == run.project,
                run_table.c.job == run.job,
                run_table.c.status.in_(FINAL_RAN),
                run_table.c.identifier != run.identifier,
                sa.or_(
                    ended < run.completion_date,
                    sa.and_(ended == run.completion_date, run_table.c.identifier < run.identifier),
                ),
            )
            .order_by(ended.desc(), run_table.c.identifier.desc())
            .limit(1)
        )
        found: str | None = await conn.scalar(query)
        return found

    async def _pipeline_events(
        self,
        conn: AsyncConnection,
        project: str,
        subject: str,
        status: str | None,
        wanted: set[str],
    ) -> list[tuple[str, str, dict[str, Any]]]:
        ended = {"succeeded": rules.PIPELINE_SUCCEEDED, "failed": rules.PIPELINE_FAILED}
        if rules.APPROVAL_WAITING not in wanted and ended.get(status or "") not in wanted:
            return []
        row = await pipeline_store.get(conn, subject, project)
        if row is None:
            return []
        nodes = (await pipeline_store.nodes_of(conn, [subject]))[subject]
        data = shown_pipeline_run(row, nodes, await pipeline_store.latest_runs(conn, subject))
        found: list[tuple[str, str, dict[str, Any]]] = []
        if rules.APPROVAL_WAITING in wanted:
            # An approval node was waiting if it is (or was decided: approved or rejected).
            for node in data["nodes"]:
                if "approval" in node and node["status"] in ("waiting", "succeeded", "failed"):
                    key = f"approval.waiting:{subject}:{node['identifier']}"
                    found.append((rules.APPROVAL_WAITING, key, data))
        event = ended.get(data["status"])
        if event is not None and event in wanted:
            found.append((event, f"{event}:{subject}", data))
        return found
