"""What a scheduler tick decides for one schedule: catch-up and overlap policies, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestra.domain.schedules import Catchup, Overlap, ScheduleState, parse_policies, plan
from orchestra.errors import InvalidInput

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def state(**changes: object) -> ScheduleState:
    values: dict[str, object] = {
        "expression": "* * * * *",
        "time_zone": "UTC",
        "seed": "p/s",
        "overlap": Overlap.SKIP,
        "catchup": Catchup.LATEST,
        "catchup_window": None,
        "catchup_max": None,
        "next_due_date": T0,
        "queued_due_date": None,
        "previous_active": False,
    }
    values.update(changes)
    return ScheduleState(**values)  # type: ignore[arg-type]


def test_plan_on_time_fires_the_due_time_and_advances() -> None:
    decided = plan(state(), T0 + timedelta(seconds=1))
    assert decided.fire == [T0]
    assert decided.skipped == []
    assert decided.next_due_date == T0 + MINUTE


def test_plan_overlap_skip_records_the_skipped_time() -> None:
    decided = plan(state(previous_active=True), T0 + timedelta(seconds=1))
    assert decided.fire == []
    assert decided.skipped == [(T0, "the previous run is still pending or running")]
    assert decided.next_due_date == T0 + MINUTE


def test_plan_overlap_allow_fires_anyway() -> None:
    decided = plan(state(previous_active=True, overlap=Overlap.ALLOW), T0)
    assert decided.fire == [T0]


def test_plan_overlap_queue_keeps_one_due_time_then_fires_it() -> None:
    busy = plan(state(previous_active=True, overlap=Overlap.QUEUE), T0)
    assert busy.fire == [] and busy.queued_due_date == T0
    again = plan(
        state(
            previous_active=True,
            overlap=Overlap.QUEUE,
            queued_due_date=T0,
            next_due_date=T0 + MINUTE,
        ),
        T0 + MINUTE,
    )
    assert again.fire == [] and again.queued_due_date == T0
    assert again.skipped[0][0] == T0 + MINUTE
    freed = plan(
        state(overlap=Overlap.QUEUE, queued_due_date=T0, next_due_date=T0 + 2 * MINUTE),
        T0 + MINUTE + timedelta(seconds=30),
    )
    assert freed.fire == [T0] and freed.queued_due_date is None


def test_plan_catchup_latest_fires_only_the_most_recent_missed_time() -> None:
    now = T0 + timedelta(hours=3, seconds=90)
    decided = plan(state(), now)
    # 15:01 is 30 s late (on time); 12:00 to 15:00 were missed and one run covers them.
    assert decided.fire == [T0 + timedelta(hours=3, minutes=1)]
    assert len(decided.skipped) == 181
    assert all(reason == "missed while no master was running" for _, reason in decided.skipped)
    assert decided.next_due_date == T0 + timedelta(hours=3, minutes=2)


def test_plan_catchup_latest_when_nothing_is_on_time() -> None:
    decided = plan(state(expression="0 * * * *"), T0 + timedelta(hours=2, minutes=30))
    assert decided.fire == [T0 + timedelta(hours=2)]
    assert [d for d, _ in decided.skipped] == [T0, T0 + timedelta(hours=1)]
    assert decided.next_due_date == T0 + timedelta(hours=3)


def test_plan_catchup_none_fires_nothing_missed() -> None:
    hourly = state(expression="0 * * * *", catchup=Catchup.NONE)
    decided = plan(hourly, T0 + timedelta(hours=2, minutes=30))
    assert decided.fire == []
    assert len(decided.skipped) == 3
    assert decided.next_due_date == T0 + timedelta(hours=3)


def test_plan_catchup_all_fires_missed_times_within_window_and_cap() -> None:
    now = T0 + timedelta(minutes=30, seconds=70)
    decided = plan(
        state(catchup=Catchup.ALL, overlap=Overlap.ALLOW, catchup_window=600, catchup_max=5),
        now,
    )
    # 12:31 is on time; 12:22 to 12:30 are late but inside the window; the cap keeps 5.
    assert decided.fire == [T0 + timedelta(minutes=m) for m in range(27, 32)]
    assert len(decided.skipped) == 27


def test_plan_after_a_very_long_outage_stays_cheap_and_correct() -> None:
    decided = plan(state(), T0 + timedelta(days=400, seconds=5))
    assert decided.fire == [T0 + timedelta(days=400)]
    assert decided.skipped[0][1].startswith("due times from")


def test_parse_policies_defaults_and_errors() -> None:
    assert parse_policies({}) == {
        "overlap": "skip",
        "catchup": "latest",
        "catchup_window": None,
        "catchup_max": None,
    }
    for bad in ({"overlap": "sometimes"}, {"catchup": "x"}, {"catchup_window": -1}):
        with pytest.raises(InvalidInput):
            parse_policies(bad)
    with pytest.raises(InvalidInput):
        parse_policies({"catchup_max": 0})
