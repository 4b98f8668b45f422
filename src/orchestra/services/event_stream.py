"""The live event stream's reading of the change log (storage/event_log.py): the rows after a
cursor, without skipping an id that commits late, and the objects they name, loaded in batches.

Ids commit out of order on PostgreSQL: a transaction that took id 7 may commit after the one
that took 8. A reader that moved past 7 when it saw 8 would never send 7. So `LogCursor` stops
before a missing id and waits for it, up to GAP_SECONDS (a rolled-back transaction leaves a
hole for good); SQLite's one writer commits in id order and leaves no hole.

The objects are read when the events are sent, one query per kind per batch (no copy is
kept in the log): an event says what changed, its data is the object as it is now (or, if it
is gone, `{"identifier": ..., "deleted": true}`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.models import Run, Schedule, Worker
from orchestra.services.parameter_secrets import shown_schedule
from orchestra.services.pipeline_runs import shown as shown_pipeline_run
from orchestra.services.schedule_rows import keys_in
from orchestra.storage import event_log
from orchestra.storage import pipeline_runs as pipeline_run_storage
from orchestra.storage import runs as run_storage
from orchestra.storage.schema import pipeline_run as pipeline_run_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import schedule as schedule_table
from orchestra.storage.schema import worker as worker_table

GAP_SECONDS = 3.0  # how long a missing id holds back the ids after it
BATCH = 500


@dataclass(frozen=True, slots=True)
class Event:
    identifier: int
    type: str
    project: str | None
    subject: str
    status: str | None

    @property
    def kind(self) -> str:
        """run, pipeline_run, worker or schedule."""
        return self.type.split(".", 1)[0]


def _event(row: Any) -> Event:
    return Event(row["identifier"], row["type"], row["project"], row["subject"], row["status"])


class LogCursor:
    """Reads the change log in id order from `position` on, never past a missing id younger
    than GAP_SECONDS."""

    def __init__(
        self,
        position: int,
        *,
        gap_seconds: float = GAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.position = position
        self.gap_seconds = gap_seconds
        self.clock = clock
        self._gap: tuple[int, float] | None = None  # the missing id waited for, since when

    @property
    def waiting(self) -> bool:
        """Is a missing id holding events back (read again soon)?"""
        return self._gap is not None

    async def read(self, conn: AsyncConnection, limit: int = BATCH) -> list[Event]:
        """The events after the position, in order, up to the first missing id still awaited;
        the position moves past them."""
        rows = await event_log.read_after(conn, self.position, limit)
        taken: list[Event] = []
        for row in rows:
            identifier = row["identifier"]
            if identifier != self.position + 1 and not self._gap_given_up(self.position + 1):
                break
            self._gap = None
            taken.append(_event(row))
            self.position = identifier
        return taken

    def _gap_given_up(self, missing: int) -> bool:
        now = self.clock()
        if self._gap is None or self._gap[0] != missing:
            self._gap = (missing, now)
        return now - self._gap[1] >= self.gap_seconds


async def bounds(conn: AsyncConnection) -> tuple[int | None, int | None]:
    return await event_log.bounds(conn)


async def read_between(
    conn: AsyncConnection, after: int, through: int, limit: int = BATCH
) -> list[Event]:
    """The events after `after` through `through` (a resumed client's catch-up)."""
    rows = await event_log.read_after(conn, after, limit)
    return [_event(r) for r in rows if r["identifier"] <= through]


async def load(
    conn: AsyncConnection, events: Sequence[Event]
) -> dict[tuple[str, str, str | None], Any]:
    """The objects the events name, by (kind, subject, project): Run, a pipeline run as the
    API shows it (a dict), Worker or Schedule; absent when gone. One query per kind (and one
    for the runs' steps, two for the pipeline runs' nodes and runs)."""
    wanted: dict[str, set[tuple[str, str | None]]] = {}
    for event in events:
        wanted.setdefault(event.kind, set()).add((event.subject, event.project))
    found: dict[tuple[str, str, str | None], Any] = {}
    if "run" in wanted:
        for run in await _runs(conn, [s for s, _ in wanted["run"]]):
            found[("run", run.identifier, run.project)] = run
    if "pipeline_run" in wanted:
        for shown in await _pipeline_runs(conn, [s for s, _ in wanted["pipeline_run"]]):
            found[("pipeline_run", shown["identifier"], shown["project"])] = shown
    if "worker" in wanted:
        for worker in await _workers(conn, [s for s, _ in wanted["worker"]]):
            found[("worker", worker.identifier, None)] = worker
    if "schedule" in wanted:
        for schedule in await _schedules(conn, wanted["schedule"]):
            found[("schedule", schedule.identifier, schedule.project)] = schedule
    return found


async def _runs(conn: AsyncConnection, identifiers: list[str]) -> list[Run]:
    query = sa.select(run_table).where(run_table.c.identifier.in_(identifiers))
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    steps = await run_storage.steps_of(conn, [r["identifier"] for r in rows]) if rows else {}
    return [Run.from_row(r, steps.get(r["identifier"], [])) for r in rows]


async def _pipeline_runs(conn: AsyncConnection, identifiers: list[str]) -> list[dict[str, Any]]:
    query = sa.select(pipeline_run_table).where(pipeline_run_table.c.identifier.in_(identifiers))
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    if not rows:
        return []
    present = [r["identifier"] for r in rows]
    nodes = await pipeline_run_storage.nodes_of(conn, present)
    latest = await _latest_runs(conn, present)
    return [
        shown_pipeline_run(r, nodes[r["identifier"]], latest.get(r["identifier"], {})) for r in rows
    ]


async def _latest_runs(conn: AsyncConnection, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    """Each pipeline run's nodes' latest runs (storage/pipeline_runs.py's latest_runs, for
    many pipeline runs in one query)."""
    query = sa.select(
        run_table.c.identifier,
        run_table.c.pipeline_run,
        run_table.c.pipeline_node,
        run_table.c.status,
        run_table.c.attempt,
        run_table.c.results,
    ).where(run_table.c.pipeline_run.in_(identifiers))
    latest: dict[str, dict[str, Any]] = {}
    for row in (await conn.execute(query)).mappings():
        node = row["pipeline_node"]
        if node is None:
            continue
        of_run = latest.setdefault(row["pipeline_run"], {})
        if node not in of_run or row["attempt"] > of_run[node]["attempt"]:
            of_run[node] = dict(row)
    return latest


async def _workers(conn: AsyncConnection, identifiers: list[str]) -> list[Worker]:
    query = sa.select(worker_table).where(worker_table.c.identifier.in_(identifiers))
    return [Worker.from_row(r) for r in (await conn.execute(query)).mappings()]


async def _schedules(
    conn: AsyncConnection, keys: Iterable[tuple[str, str | None]]
) -> list[Schedule]:
    pairs = [(project, subject) for subject, project in keys if project is not None]
    if not pairs:
        return []
    query = sa.select(schedule_table).where(keys_in(schedule_table, pairs))
    return [shown_schedule(Schedule.from_row(r)) for r in (await conn.execute(query)).mappings()]
