"""A run's output with the time of each chunk (run_log.date), for logs shown with timestamps.

The master stores output in chunks as the worker read it from its step (every few tens of
milliseconds while a step writes); each chunk's `date` is when it was read, and a line's time is
the date of the chunk its first byte is in. One date per chunk, not per line, keeps the stored
log what it was (bytes as written) and costs the hot path one column.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.storage.runs import LOG_BATCH, LOG_BATCH_BYTES, MAX_LOG_CHUNK
from orchestra.storage.schema import run_log as log_table

TimedChunk = tuple[int, bytes, datetime | None]  # offset in the run log, bytes, when read


async def read_timed_chunks(
    conn: AsyncConnection, run: str, offset: int, step_index: int | None = None
) -> list[TimedChunk]:
    """Up to LOG_BATCH chunks holding bytes at or after `offset`, in order, with their dates
    (as storage/runs.py's read_log_chunks reads them)."""
    end = log_table.c.offset + sa.func.length(log_table.c.data)
    query = sa.select(log_table.c.offset, log_table.c.data, log_table.c.date).where(
        log_table.c.run == run,
        log_table.c.offset > offset - MAX_LOG_CHUNK,
        log_table.c.offset < offset + LOG_BATCH_BYTES,
        end > offset,
    )
    if step_index is not None:
        query = query.where(log_table.c.step_index == step_index)
    query = query.order_by(log_table.c.offset).limit(LOG_BATCH)
    return [(int(r.offset), bytes(r.data), r.date) for r in await conn.execute(query)]
