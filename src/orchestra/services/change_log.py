"""The change log from the services' side (storage/event_log.py writes it): what a service
calls in its transaction for a change that storage does not log by itself, and the pruning
done by the master's upkeep.

Storage logs on its own: runs inserted (`storage/runs.py` insert_run, insert_runs) and moved
by `set_run_status`, runs claimed by dispatch, reports applied, pipeline runs inserted and
updated (`storage/pipeline_runs.py`), workers registered, updated, disconnected or marked away
(`storage/workers.py`). Services log the rest through here: schedules' firings, abort requests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.storage import event_log
from orchestra.storage.event_log import Change
from orchestra.storage.schema import metadata

log = logging.getLogger(__name__)

# Rows are kept this long at least (the stream resumes within an hour), and never deleted
# before the notifications relay has read them (its cursor, when its table exists).
KEEP = timedelta(hours=2)
# The relay's durable cursor (the notifications helper's table), if it exists: (table, column).
RELAY_CURSORS = (("notification_relay", "position"),)

__all__ = ["Change", "fired", "prune", "record"]


async def record(conn: AsyncConnection, changes: Iterable[Change]) -> None:
    """Log these changes in the caller's transaction (one statement, coalesced by subject)."""
    await event_log.append(conn, changes)


async def fired(conn: AsyncConnection, firings: Iterable[Mapping[str, Any]]) -> None:
    """Log the schedules' firings among these firing rows (schedule_rows.firing_row's) that
    started something (outcome `fired`)."""
    await event_log.append(
        conn,
        [
            Change(event_log.SCHEDULE_FIRED, f["project"], f["schedule"], f["outcome"])
            for f in firings
            if f["outcome"] == "fired"
        ],
    )


async def prune(conn: AsyncConnection, now: datetime) -> int:
    """Delete the rows older than KEEP that every reader is done with; the number deleted."""
    keep_from = await _relay_cursor(conn)
    deleted = await event_log.prune(conn, now - KEEP, keep_from)
    if deleted:
        log.info("change log: %d rows older than %s deleted", deleted, KEEP)
    return deleted


async def _relay_cursor(conn: AsyncConnection) -> int | None:
    """The lowest cursor of the notifications relay (rows after it are not relayed yet), or
    None when there is no relay table."""
    for table_name, column in RELAY_CURSORS:
        table = metadata.tables.get(table_name)
        if table is None or column not in table.c:
            continue
        found = await conn.scalar(sa.select(sa.func.min(table.c[column])))
        return None if found is None else int(found) + 1
    return None
