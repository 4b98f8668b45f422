"""Schedule rules: expression checks, policies, and what a tick decides for one schedule.

`plan` is pure: given a schedule's state and the time, it says which due times to fire, which
to skip and why, and the next due time. The scheduler applies the plan in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from orchestra.domain import cron
from orchestra.errors import InvalidInput

# Due times at most this late still count as on time (a busy or restarting master).
ON_TIME_GRACE = timedelta(seconds=60)
DEFAULT_CATCHUP_WINDOW = 86400.0
DEFAULT_CATCHUP_MAX = 10
MAX_CATCHUP_MAX = 1000


class Overlap(StrEnum):
    SKIP = "skip"  # no new run while the previous one is pending or running
    QUEUE = "queue"  # keep one due time waiting, fire it when the previous run ends
    ALLOW = "allow"  # fire regardless


class Catchup(StrEnum):
    LATEST = "latest"  # after downtime, one run for the most recent missed due time
    NONE = "none"  # after downtime, nothing: wait for the next due time
    ALL = "all"  # every missed due time within the window, up to the cap


def check_expression(raw: object) -> str:
    """Return the normalised expression if it parses and fires at least once."""
    if not isinstance(raw, str):
        raise InvalidInput("expression must be a cron expression such as '0 3 * * *'")
    parsed = cron.parse(raw)
    cron.check_fires(parsed)
    return parsed.expression


def seed(project: str, identifier: str) -> str:
    """The identity `H` derives its values from."""
    return f"{project}/{identifier}"


@dataclass(frozen=True)
class ScheduleState:
    expression: str
    time_zone: str
    seed: str
    overlap: Overlap
    catchup: Catchup
    catchup_window: float | None
    catchup_max: int | None
    next_due_date: datetime
    queued_due_date: datetime | None
    previous_active: bool  # the run it triggered last is pending or running


@dataclass
class Plan:
    fire: list[datetime] = field(default_factory=list)
    skipped: list[tuple[datetime, str]] = field(default_factory=list)
    queued_due_date: datetime | None = None
    next_due_date: datetime | None = None


def plan(state: ScheduleState, now: datetime) -> Plan:
    """Decide what a schedule does at `now`, when its next due time has come (or a queued one
    waits)."""
    parsed = cron.parse(state.expression, state.seed)
    zone = cron.time_zone(state.time_zone)
    result = Plan(queued_due_date=state.queued_due_date)
    first = state.next_due_date
    horizon = now - timedelta(seconds=max(state.catchup_window or 0, 2 * 86400))
    if first < horizon:
        # A long outage: only due times near `now` can matter; say so for the older ones.
        result.skipped.append((first, f"due times from {first.isoformat()} on were missed"))
        first = cron.next_due(parsed, horizon, zone) or now
    due = _due_until(parsed, zone, first, now, limit=MAX_CATCHUP_MAX + 1)
    result.next_due_date = cron.next_due(parsed, max(now, due[-1] if due else now), zone)
    chosen, missed = _catch_up(state, due, now)
    for moment in missed:
        result.skipped.append((moment, "missed while no master was running"))
    if state.queued_due_date is not None and not state.previous_active:
        result.fire.append(state.queued_due_date)
        result.queued_due_date = None
    for moment in chosen:
        _overlap(state, result, moment)
    return result


def _due_until(
    parsed: cron.Cron, zone: ZoneInfo, first: datetime, now: datetime, limit: int
) -> list[datetime]:
    """Due times from `first` to `now`, keeping only the last `limit` of them."""
    due: list[datetime] = []
    moment: datetime | None = first
    while moment is not None and moment <= now:
        due.append(moment)
        if len(due) > limit:
            due.pop(0)
        moment = cron.next_due(parsed, moment, zone)
    return due


def _catch_up(
    state: ScheduleState, due: list[datetime], now: datetime
) -> tuple[list[datetime], list[datetime]]:
    on_time = [d for d in due if now - d <= ON_TIME_GRACE]
    late = [d for d in due if now - d > ON_TIME_GRACE]
    if state.catchup is Catchup.NONE or not late:
        return on_time, late
    if state.catchup is Catchup.LATEST:
        if on_time:
            return on_time, late
        return [late[-1]], late[:-1]
    window = timedelta(seconds=state.catchup_window or DEFAULT_CATCHUP_WINDOW)
    cap = state.catchup_max or DEFAULT_CATCHUP_MAX
    eligible = [d for d in late if now - d <= window]
    kept = (eligible + on_time)[-cap:]
    return kept, [d for d in due if d not in kept]


def _overlap(state: ScheduleState, result: Plan, moment: datetime) -> None:
    busy = state.previous_active or bool(result.fire)
    if not busy or state.overlap is Overlap.ALLOW:
        result.fire.append(moment)
    elif state.overlap is Overlap.QUEUE and result.queued_due_date is None:
        result.queued_due_date = moment
    elif state.overlap is Overlap.QUEUE:
        result.skipped.append((moment, "a due time is already queued behind the previous run"))
    else:
        result.skipped.append((moment, "the previous run is still pending or running"))


def parse_policies(data: dict[str, object]) -> dict[str, object]:
    """Validate overlap, catchup, catchup_window and catchup_max (with defaults)."""
    try:
        overlap = Overlap(str(data.get("overlap") or Overlap.SKIP))
    except ValueError:
        raise InvalidInput("overlap must be skip, queue or allow") from None
    try:
        catchup = Catchup(str(data.get("catchup") or Catchup.LATEST))
    except ValueError:
        raise InvalidInput("catchup must be latest, none or all") from None
    window = data.get("catchup_window")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int | float) or window <= 0
    ):
        raise InvalidInput("catchup_window must be a positive number of seconds")
    cap = data.get("catchup_max")
    if cap is not None and (
        isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CATCHUP_MAX
    ):
        raise InvalidInput(f"catchup_max must be a whole number from 1 to {MAX_CATCHUP_MAX}")
    return {
        "overlap": overlap.value,
        "catchup": catchup.value,
        "catchup_window": None if window is None else float(window),
        "catchup_max": cap,
    }


def preview(
    project: str, identifier: str, expression: str, time_zone: str, now: datetime, count: int = 5
) -> tuple[str, list[datetime]]:
    """A schedule's description and its next `count` due times after `now`."""
    parsed = cron.parse(expression, seed(project, identifier))
    zone = cron.time_zone(time_zone)
    return cron.describe(parsed, time_zone), cron.due_times(parsed, now, zone, count)
