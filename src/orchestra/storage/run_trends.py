"""What the website's charts draw: a job's newest runs (status and times only) and a project's
runs that ended, counted by day and final status. Read-only; the day is the UTC one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.statuses import FINAL_RUN_STATUSES
from orchestra.storage.schema import run as run_table

TREND_COLUMNS = ("identifier", "status", "creation_date", "start_date", "completion_date")


async def newest_runs(
    conn: AsyncConnection, project: str, job: str, count: int
) -> Sequence[sa.RowMapping]:
    """The job's `count` newest runs, newest first: identifier, status and dates alone (one
    range of the (project, job, creation) index)."""
    query = (
        sa.select(*(run_table.c[name] for name in TREND_COLUMNS))
        .where(run_table.c.project == project, run_table.c.job == job)
        .order_by(run_table.c.creation_date.desc(), run_table.c.identifier.desc())
        .limit(count)
    )
    return list((await conn.execute(query)).mappings())


def _day(conn: AsyncConnection) -> sa.ColumnElement[str]:
    """A run's creation day in UTC, as text YYYY-MM-DD. SQLite stores dates as UTC text
    ("YYYY-MM-DD HH:MM:SS.ffffff", storage/column_types.py); PostgreSQL as timestamptz."""
    if conn.dialect.name == "sqlite":
        return sa.func.substr(run_table.c.creation_date, 1, 10)
    utc = sa.func.timezone("UTC", run_table.c.creation_date)
    return sa.func.to_char(utc, "YYYY-MM-DD")


async def daily_outcomes(
    conn: AsyncConnection, project: str, since: datetime
) -> dict[str, dict[str, int]]:
    """The project's runs created since `since` that have ended, counted by UTC day
    ("YYYY-MM-DD") and final status."""
    day = _day(conn).label("day")
    query = (
        sa.select(day, run_table.c.status, sa.func.count().label("count"))
        .where(
            run_table.c.project == project,
            run_table.c.creation_date >= since,
            run_table.c.status.in_(sorted(s.value for s in FINAL_RUN_STATUSES)),
        )
        .group_by(day, run_table.c.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for row in (await conn.execute(query)).mappings():
        counts.setdefault(str(row["day"]), {})[str(row["status"])] = int(row["count"])
    return counts
