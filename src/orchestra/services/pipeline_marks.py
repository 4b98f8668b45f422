"""Marking pipeline runs for advancing when one of their runs ends, inside the transaction that
ends it: a mark committed with the run's end is never lost, whoever dies after. The master that
ended the run advances the pipeline run right after its commit (a signal on ADVANCE, kept in
this process); the masters' pipelines loop (master/pipelines.py) advances marks left older than
a second, which recovers what a master killed in between left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.services.events import Events
from orchestra.storage import pipeline_runs as pipeline_run_storage

ADVANCE = "pipelines"  # the in-process signal: "pipeline runs were marked, advance them"


async def runs_ended(conn: AsyncConnection, runs: Sequence[str], now: datetime) -> bool:
    """Mark the pipeline runs of these runs, which just ended; True if any was marked (then
    signal ADVANCE after the commit)."""
    return await pipeline_run_storage.mark_for_runs(conn, runs, now) > 0


def advance_soon(events: Events) -> None:
    """Wake this process's pipelines loop (only this process's: the others poll)."""
    events.publish(ADVANCE, remote=False)
