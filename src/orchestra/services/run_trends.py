"""The website's charts: a job's newest runs as bars, a project's success rate by day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestra.domain.trends import DayRate, RunBar, day_rates, run_bar
from orchestra.storage import run_trends
from orchestra.storage.engine import Database

JOB_RUNS = 30
PROJECT_DAYS = 30


async def job_bars(
    db: Database, project: str, job: str, now: datetime, count: int = JOB_RUNS
) -> list[RunBar]:
    """The job's `count` newest runs, oldest first (the order of a chart's bars)."""
    async with db.read() as conn:
        rows = await run_trends.newest_runs(conn, project, job, count)
    return [run_bar(row, now) for row in reversed(rows)]


async def project_days(
    db: Database, project: str, now: datetime, days: int = PROJECT_DAYS
) -> list[DayRate]:
    """The project's success rate on each of the last `days` days (UTC), oldest first."""
    today = now.astimezone(UTC).date()
    since = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=days - 1)
    async with db.read() as conn:
        counts = await run_trends.daily_outcomes(conn, project, since)
    return day_rates(counts, today, days)
