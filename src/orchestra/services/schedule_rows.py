"""Rows of the schedules' tables as the scheduler reads and writes them: a schedule's state for
the planner, a firing's row and key, and key lists that PostgreSQL answers by index."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestra.domain.schedules import Catchup, Overlap, ScheduleState, seed
from orchestra.storage.schema import schedule_firing as firing_table


def state_of(row: Any, previous_active: bool) -> ScheduleState:
    return ScheduleState(
        expression=row["expression"],
        time_zone=row["time_zone"],
        seed=seed(row["project"], row["identifier"]),
        overlap=Overlap(row["overlap"]),
        catchup=Catchup(row["catchup"]),
        catchup_window=row["catchup_window"],
        catchup_max=row["catchup_max"],
        next_due_date=row["next_due_date"],
        queued_due_date=row["queued_due_date"],
        previous_active=previous_active,
    )


def firing_row(
    row: Any, due: datetime, run: str | None, outcome: str, reason: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "project": row["project"],
        "schedule": row["identifier"],
        "due_date": due,
        "run": run,
        "outcome": outcome,
        "reason": reason,
        "creation_date": now,
    }


def keys_in(table: sa.Table, keys: Iterable[tuple[str, str]]) -> sa.ColumnElement[bool]:
    """Rows of `table` with these (project, identifier) keys, as one identifier list per
    project: PostgreSQL answers `(project, identifier) IN ((...), ...)` by scanning the whole
    table (43 ms for 200 keys among 10,000 schedules), this by its primary key index."""
    by_project: dict[str, list[str]] = {}
    for project, identifier in keys:
        by_project.setdefault(project, []).append(identifier)
    return sa.or_(
        *(
            sa.and_(table.c.project == project, table.c.identifier.in_(identifiers))
            for project, identifiers in by_project.items()
        )
    )


def firing_key(row: Any, due: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        firing_table.c.project == row["project"],
        firing_table.c.schedule == row["identifier"],
        firing_table.c.due_date == due,
    ]
