"""What the charts of the website show, computed from runs: a job's recent runs as bars (status
and duration) and a project's success rate by day. Pure: no I/O, no clock of its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

# Runs that were cancelled never ran: they count in no success rate.
NOT_RUN = frozenset({"cancelled"})


@dataclass(frozen=True)
class RunBar:
    """One run of a job's chart: its duration in seconds (None until it starts; up to `now`
    while it runs)."""

    identifier: str
    status: str
    creation_date: datetime
    seconds: float | None


@dataclass(frozen=True)
class DayRate:
    """One day of a project's success rate: its runs that ended (cancelled ones aside), and
    how many of them succeeded."""

    day: date
    ran: int
    succeeded: int

    @property
    def rate(self) -> float | None:
        return self.succeeded / self.ran if self.ran else None


def run_bar(row: Mapping[Any, Any], now: datetime) -> RunBar:
    start, end = row["start_date"], row["completion_date"]
    seconds = None
    if isinstance(start, datetime):
        seconds = max(((end if isinstance(end, datetime) else now) - start).total_seconds(), 0.0)
    created = row["creation_date"]
    assert isinstance(created, datetime)
    return RunBar(str(row["identifier"]), str(row["status"]), created, seconds)


def day_rates(counts: Mapping[str, Mapping[str, int]], last_day: date, days: int) -> list[DayRate]:
    """The `days` days up to `last_day`, oldest first, each with its counts ("YYYY-MM-DD" ->
    status -> runs); a day without runs has none (no rate)."""
    rates = []
    for back in range(days - 1, -1, -1):
        day = last_day - timedelta(days=back)
        by_status = counts.get(day.isoformat(), {})
        ran = sum(n for status, n in by_status.items() if status not in NOT_RUN)
        rates.append(DayRate(day, ran, by_status.get("succeeded", 0)))
    return rates
