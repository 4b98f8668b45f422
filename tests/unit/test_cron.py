"""The cron engine: fields, names, macros, H, time zones and daylight saving, descriptions,
and a cross-check of due times against cronsim over thousands of random expressions (cronsim
finds our wall-clock times too, from the values our parser hands it: the cross-check lets
cronsim read the expressions itself).

(croniter was tried first as the oracle and disagreed on `* 15-23/3 * 10-10 0,1,3` from
2026-11-02, answering a November date for an October-only expression: its bug, not ours.)"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from orchestra.domain import cron
from orchestra.errors import InvalidInput

UTC_ZONE = ZoneInfo("UTC")
START = datetime(2026, 5, 17, 13, 42, 10, tzinfo=UTC)


def due(expression: str, after: datetime = START, zone: str = "UTC", count: int = 3) -> list[str]:
    parsed = cron.parse(expression, "project/schedule")
    times = cron.due_times(parsed, after, ZoneInfo(zone), count)
    return [t.astimezone(ZoneInfo(zone)).isoformat() for t in times]


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_cron_macros_equal_their_expressions(macro: str, equivalent: str) -> None:
    assert due(macro, count=4) == due(equivalent, count=4)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/20 * * * *", ["2026-05-17T14:00:00+00:00", "2026-05-17T14:20:00+00:00"]),
        ("5-7 14 * * *", ["2026-05-17T14:05:00+00:00", "2026-05-17T14:06:00+00:00"]),
        ("0 9-17/4 * * *", ["2026-05-17T17:00:00+00:00", "2026-05-18T09:00:00+00:00"]),
        ("0 0 1,15 * *", ["2026-06-01T00:00:00+00:00", "2026-06-15T00:00:00+00:00"]),
        ("0 12 * JUN-AUG *", ["2026-06-01T12:00:00+00:00", "2026-06-02T12:00:00+00:00"]),
        ("30 8 * * MON-FRI", ["2026-05-18T08:30:00+00:00", "2026-05-19T08:30:00+00:00"]),
        ("0 0 * * 7", ["2026-05-24T00:00:00+00:00", "2026-05-31T00:00:00+00:00"]),
        ("0 0 * * sun", ["2026-05-24T00:00:00+00:00", "2026-05-31T00:00:00+00:00"]),
        ("10/25 14 * * *", ["2026-05-17T14:10:00+00:00", "2026-05-17T14:35:00+00:00"]),
        # Day of month and day of week both restricted: either matches (Vixie cron).
        ("0 0 20 * MON", ["2026-05-18T00:00:00+00:00", "2026-05-20T00:00:00+00:00"]),
        ("0 0 29 2 *", ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]),
    ],
)
def test_cron_field_forms(expression: str, expected: list[str]) -> None:
    assert due(expression, count=2) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "cron expression"),
        ("* * * *", "has 4 fields"),
        ("* * * * * *", "has 6 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("* * 0 * *", "day of month: 0 is outside 1-31"),
        ("* * * 13 *", "month: 13 is outside 1-12"),
        ("* * * * 8", "day of week: 8 is outside 0-7"),
        ("*/0 * * * *", "step must be a positive number"),
        ("5-1 * * * *", "runs backwards"),
        ("* * * FOO *", "'FOO' is not a number or name"),
        ("1,,2 * * * *", "empty list item"),
        ("@every_minute", "unknown macro"),
        ("H(5) * * * *", "expected a range"),
    ],
)
def test_cron_invalid_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        cron.parse(expression)


def test_cron_expression_that_never_fires_is_refused() -> None:
    with pytest.raises(InvalidInput, match="never fires"):
        cron.check_fires(cron.parse("0 0 30 2 *"))
    cron.check_fires(cron.parse("0 0 31 12 *"))


def test_cron_h_is_stable_for_one_schedule_and_spread_over_many() -> None:
    first = cron.parse("H * * * *", "p/nightly")
    assert first.minutes == cron.parse("H * * * *", "p/nightly").minutes
    minutes = [next(iter(cron.parse("H * * * *", f"p/s{i}").minutes)) for i in range(1000)]
    assert all(0 <= m <= 59 for m in minutes)
    assert len(set(minutes)) == 60  # a thousand schedules use every minute of the hour
    assert max(minutes.count(m) for m in range(60)) < 40  # and none is crowded


def test_cron_h_with_range_and_step() -> None:
    ranged = cron.parse("H(10-19) * * * *", "p/a").minutes
    assert len(ranged) == 1 and 10 <= next(iter(ranged)) <= 19
    stepped = sorted(cron.parse("H/15 * * * *", "p/a").minutes)
    assert len(stepped) == 4 and stepped[0] < 15
    assert [b - a for a, b in itertools.pairwise(stepped)] == [15, 15, 15]
    hours = cron.parse("0 H(0-5) * * *", "p/a").hours
    assert len(hours) == 1 and next(iter(hours)) <= 5


# Daylight saving, in two time zones, both transitions.


def test_cron_daily_time_in_skipped_hour_fires_once_new_york() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    times = due("30 2 * * *", datetime(2026, 3, 7, 12, tzinfo=UTC), "America/New_York", 3)
    assert times == [
        "2026-03-08T03:30:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_cron_daily_time_in_repeated_hour_fires_once_new_york() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice that day.
    times = due("30 1 * * *", datetime(2026, 10, 31, 12, tzinfo=UTC), "America/New_York", 3)
    assert times == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]


def test_cron_hourly_keeps_firing_through_the_repeated_hour() -> None:
    times = due("30 * * * *", datetime(2026, 11, 1, 4, tzinfo=UTC), "America/New_York", 4)
    assert times == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]


def test_cron_hourly_on_the_skipped_hour_fires_once_per_instant() -> None:
    times = due("30 * * * *", datetime(2026, 3, 8, 5, tzinfo=UTC), "America/New_York", 3)
    assert times == [
        "2026-03-08T00:30:00-05:00",
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:30:00-04:00",
    ]


def test_cron_daily_time_in_skipped_hour_fires_once_paris() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    times = due("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=UTC), "Europe/Paris", 2)
    assert times == ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_cron_daily_time_in_repeated_hour_fires_once_paris() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    times = due("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=UTC), "Europe/Paris", 2)
    assert times == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_cron_due_times_are_strictly_increasing_across_transitions() -> None:
    for zone in ("America/New_York", "Europe/Paris", "Australia/Lord_Howe"):
        parsed = cron.parse("*/30 * * * *")
        times = cron.due_times(parsed, datetime(2026, 1, 1, tzinfo=UTC), ZoneInfo(zone), 20_000)
        assert all(b > a for a, b in itertools.pairwise(times))
        assert times[-1] - times[0] > timedelta(days=400)


def test_cron_describe() -> None:
    assert cron.describe(cron.parse("0 3 * * *"), "UTC") == "At 03:00, every day (UTC)"
    assert cron.describe(cron.parse("*/15 * * * *")).startswith("Every 15 minutes")
    assert "Monday" in cron.describe(cron.parse("0 9 * * MON-FRI"))
    assert "February" in cron.describe(cron.parse("0 0 29 2 *"))


# Cross-check with an independent implementation.

_FIELD_CHOICES = [
    lambda r, lo, hi: "*",
    lambda r, lo, hi: str(r.randint(lo, hi)),
    lambda r, lo, hi: f"{(a := r.randint(lo, hi - 1))}-{r.randint(a, hi)}",
    lambda r, lo, hi: f"*/{r.randint(2, max(2, (hi - lo) // 2))}",
    lambda r, lo, hi: ",".join(str(v) for v in sorted(r.sample(range(lo, hi + 1), 3))),
    lambda r, lo, hi: f"{r.randint(lo, hi - 1)}-{hi}/{r.randint(2, 5)}",
]


def _random_expression(rnd: random.Random) -> str:
    fields = []
    for low, high in ((0, 59), (0, 23), (1, 28), (1, 12), (0, 6)):
        fields.append(rnd.choice(_FIELD_CHOICES)(rnd, low, high))
    # A step on `*` in a day field counts as unrestricted here (Vixie cron); keep them plain.
    for index in (2, 4):
        if fields[index].startswith("*/"):
            fields[index] = "*"
    return " ".join(fields)


def test_cron_next_due_times_agree_with_cronsim() -> None:
    rnd = random.Random(20261128)
    for _ in range(3000):
        expression = _random_expression(rnd)
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rnd.randint(0, 525_600))
        ours = cron.due_times(cron.parse(expression), start, UTC_ZONE, 3)
        theirs_iter = CronSim(expression, start)
        theirs = [next(theirs_iter) for _ in range(3)]
        assert ours == theirs, (expression, start)


# Behaviours pinned before the due-time search moved to cronsim (the parser, H, the daylight
# saving rules and the descriptions stay Orchestra's own).


def test_cron_h_values_are_stable_across_versions() -> None:
    # H is persisted in effect (a schedule's next due time): a change of hash moves every
    # H schedule, so the values for given identities are pinned.
    def fields(expression: str, seed: str) -> list[list[int]]:
        parsed = cron.parse(expression, seed)
        values = (parsed.minutes, parsed.hours, parsed.days, parsed.months, parsed.weekdays)
        return [sorted(v) for v in values]

    assert fields("H * * * *", "p/nightly")[0] == [44]
    assert fields("H H * * *", "p/nightly")[:2] == [[44], [22]]
    assert fields("H/15 * * * *", "p/a")[0] == [4, 19, 34, 49]
    assert fields("H/7 * * * *", "x/y")[0] == [6, 13, 20, 27, 34, 41, 48, 55]
    assert fields("H(10-19) * * * *", "p/a")[0] == [19]
    assert fields("H H(9-17)/2 H * H", "proj/backup") == [
        [59],
        [9, 11, 13, 15, 17],
        [8],
        list(range(1, 13)),
        [5],
    ]
    parsed = cron.parse("H H(9-17)/2 H * H", "proj/backup")
    times = cron.due_times(parsed, datetime(2026, 5, 1, tzinfo=UTC), ZoneInfo("Europe/Paris"), 2)
    assert [t.isoformat() for t in times] == [
        "2026-05-01T07:59:00+00:00",
        "2026-05-01T09:59:00+00:00",
    ]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # `*/n` starts again at the start of each hour, day, month or week.
        (
            "*/7 * * * *",
            datetime(2026, 5, 17, 13, 40, tzinfo=UTC),
            [
                "2026-05-17T13:42:00+00:00",
                "2026-05-17T13:49:00+00:00",
                "2026-05-17T13:56:00+00:00",
                "2026-05-17T14:00:00+00:00",
            ],
        ),
        (
            "0 */5 * * *",
            datetime(2026, 5, 17, 19, tzinfo=UTC),
            ["2026-05-17T20:00:00+00:00", "2026-05-18T00:00:00+00:00", "2026-05-18T05:00:00+00:00"],
        ),
        (
            "0 0 */10 * *",
            datetime(2026, 5, 1, tzinfo=UTC),
            [
                "2026-05-11T00:00:00+00:00",
                "2026-05-21T00:00:00+00:00",
                "2026-05-31T00:00:00+00:00",
                "2026-06-01T00:00:00+00:00",
            ],
        ),
        (
            "0 0 * * */2",
            datetime(2026, 5, 17, tzinfo=UTC),
            [
                "2026-05-19T00:00:00+00:00",
                "2026-05-21T00:00:00+00:00",
                "2026-05-23T00:00:00+00:00",
                "2026-05-24T00:00:00+00:00",
            ],
        ),
        # A `*/n` day of month is not a restriction: with a day of week, both must match.
        (
            "0 0 */10 * MON",
            datetime(2026, 5, 1, tzinfo=UTC),
            [
                "2026-05-11T00:00:00+00:00",
                "2026-06-01T00:00:00+00:00",
                "2026-08-31T00:00:00+00:00",
                "2026-09-21T00:00:00+00:00",
            ],
        ),
        # `a/n` and `NAME/n` in the day of week run to Saturday (6): Sunday (7) is not added.
        (
            "0 0 * * 1/3",
            datetime(2026, 5, 17, tzinfo=UTC),
            [
                "2026-05-18T00:00:00+00:00",
                "2026-05-21T00:00:00+00:00",
                "2026-05-25T00:00:00+00:00",
                "2026-05-28T00:00:00+00:00",
            ],
        ),
        (
            "0 0 * * MON/2",
            datetime(2026, 5, 17, tzinfo=UTC),
            [
                "2026-05-18T00:00:00+00:00",
                "2026-05-20T00:00:00+00:00",
                "2026-05-22T00:00:00+00:00",
                "2026-05-25T00:00:00+00:00",
            ],
        ),
        # Both restricted: either matches, also when one of them allows every day.
        (
            "0 0 1 * MON",
            datetime(2026, 5, 28, tzinfo=UTC),
            [
                "2026-06-01T00:00:00+00:00",
                "2026-06-08T00:00:00+00:00",
                "2026-06-15T00:00:00+00:00",
                "2026-06-22T00:00:00+00:00",
            ],
        ),
        (
            "0 0 1-31 * MON",
            datetime(2026, 5, 1, tzinfo=UTC),
            ["2026-05-02T00:00:00+00:00", "2026-05-03T00:00:00+00:00"],
        ),
        # The month still restricts.
        (
            "0 0 29 2 MON",
            datetime(2028, 2, 20, tzinfo=UTC),
            [
                "2028-02-21T00:00:00+00:00",
                "2028-02-28T00:00:00+00:00",
                "2028-02-29T00:00:00+00:00",
                "2029-02-05T00:00:00+00:00",
            ],
        ),
        # Month ends, year ends, and 29 February across 2100 (not a leap year).
        (
            "0 0 31 * *",
            datetime(2026, 1, 31, tzinfo=UTC),
            ["2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00", "2026-07-31T00:00:00+00:00"],
        ),
        (
            "59 23 31 12 *",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            ["2027-12-31T23:59:00+00:00", "2028-12-31T23:59:00+00:00"],
        ),
        ("0 0 29 2 *", datetime(2096, 3, 1, tzinfo=UTC), ["2104-02-29T00:00:00+00:00"]),
    ],
)
def test_cron_steps_and_boundaries(expression: str, after: datetime, expected: list[str]) -> None:
    assert due(expression, after, count=len(expected)) == expected


def test_cron_next_due_is_strictly_after_and_in_utc() -> None:
    parsed = cron.parse("0 12 * * *")
    noon = datetime(2026, 5, 17, 12, tzinfo=UTC)
    assert cron.next_due(parsed, noon, UTC_ZONE) == noon + timedelta(days=1)
    just_before = noon - timedelta(microseconds=1)
    assert cron.next_due(parsed, just_before, UTC_ZONE) == noon
    paris_two = datetime(2026, 5, 17, 14, tzinfo=ZoneInfo("Europe/Paris"))  # noon UTC
    result = cron.next_due(parsed, paris_two, UTC_ZONE)
    assert result == noon + timedelta(days=1) and result.tzinfo is UTC
    tokyo = cron.next_due(
        cron.parse("0 3 * * *"), datetime(2026, 1, 1, tzinfo=UTC), ZoneInfo("Asia/Tokyo")
    )
    assert tokyo == datetime(2026, 1, 1, 18, tzinfo=UTC) and tokyo.tzinfo is UTC


@pytest.mark.parametrize(
    ("expression", "after", "zone", "expected"),
    [
        # Asked from 03:10 EDT on the day 02:30 was skipped: the shifted 03:30 is still due.
        (
            "30 2 * * *",
            datetime(2026, 3, 8, 7, 10, tzinfo=UTC),
            "America/New_York",
            ["2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        # Asked from inside the repeated hour.
        (
            "30 * * * *",
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first 01:30
            "America/New_York",
            ["2026-11-01T01:30:00-05:00", "2026-11-01T02:30:00-05:00"],
        ),
        (
            "30 1 * * *",
            datetime(2026, 11, 1, 6, tzinfo=UTC),  # 01:00 EST, the second 01:00
            "America/New_York",
            ["2026-11-02T01:30:00-05:00"],
        ),
        # A restricted hour, stepped minutes: only the first pass through the repeated hour.
        (
            "*/15 1 * * *",
            datetime(2026, 11, 1, 4, tzinfo=UTC),
            "America/New_York",
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:15:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:45:00-04:00",
                "2026-11-02T01:00:00-05:00",
            ],
        ),
        (
            "0 */2 * * *",
            datetime(2026, 11, 1, 3, tzinfo=UTC),
            "America/New_York",
            ["2026-11-01T00:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T04:00:00-05:00"],
        ),
        # Lord Howe's clocks move by half an hour.
        (
            "15 2 * * *",
            datetime(2026, 10, 3, tzinfo=UTC),  # 02:00 jumps to 02:30 on 4 October
            "Australia/Lord_Howe",
            ["2026-10-04T02:45:00+11:00", "2026-10-05T02:15:00+11:00"],
        ),
        (
            "15 1 * * *",
            datetime(2026, 4, 4, tzinfo=UTC),  # 02:00 falls back to 01:30 on 5 April
            "Australia/Lord_Howe",
            ["2026-04-05T01:15:00+11:00", "2026-04-06T01:15:00+10:30"],
        ),
        (
            "15 * * * *",
            datetime(2026, 4, 4, 13, tzinfo=UTC),
            "Australia/Lord_Howe",
            [
                "2026-04-05T00:15:00+11:00",
                "2026-04-05T01:15:00+11:00",
                "2026-04-05T02:15:00+10:30",
                "2026-04-05T03:15:00+10:30",
            ],
        ),
        # London: 01:00 GMT jumps to 02:00 BST.
        (
            "30 1 * * *",
            datetime(2026, 3, 29, tzinfo=UTC),
            "Europe/London",
            ["2026-03-29T02:30:00+01:00", "2026-03-30T01:30:00+01:00"],
        ),
    ],
)
def test_cron_daylight_saving_edges(
    expression: str, after: datetime, zone: str, expected: list[str]
) -> None:
    assert due(expression, after, zone, len(expected)) == expected


def test_cron_every_minute_of_a_skipped_hour_fires_after_the_jump() -> None:
    times = due("* 2 * * *", datetime(2026, 3, 8, 5, tzinfo=UTC), "America/New_York", 62)
    assert times[0] == "2026-03-08T03:00:00-04:00" and times[59] == "2026-03-08T03:59:00-04:00"
    assert times[60:] == ["2026-03-09T02:00:00-04:00", "2026-03-09T02:01:00-04:00"]


@pytest.mark.parametrize(
    ("expression", "description"),
    [
        ("0 3 * * *", "At 03:00, every day (UTC)"),
        ("* * * * *", "Every minute, every day (UTC)"),
        ("0 * * * *", "Every hour, every day (UTC)"),
        ("5 * * * *", "At 5 minutes past every hour, every day (UTC)"),
        ("*/15 * * * *", "Every 15 minutes, every day (UTC)"),
        ("0,30 * * * *", "Every 30 minutes, every day (UTC)"),
        ("H/15 * * * *", "At minutes 14, 29, 44 and 59 of every hour, every day (UTC)"),
        ("H H * * *", "At 22:44, every day (UTC)"),
        ("15 8,12,16 * * *", "At 08:15, 12:15 and 16:15, every day (UTC)"),
        (
            "*/10 9-17 * * *",
            "Every 10 minutes of hours 09, 10, 11, 12, 13, 14, 15, 16 and 17, every day (UTC)",
        ),
        (
            "0 9 * * MON-FRI",
            "At 09:00, on Monday, Tuesday, Wednesday, Thursday and Friday (UTC)",
        ),
        ("0 0 29 2 *", "At 00:00, on day 29 of the month in February (UTC)"),
        ("0 0 1 * MON", "At 00:00, on day 1 of the month or on Monday (UTC)"),
        ("0 0 1,15 * *", "At 00:00, on day 1 and 15 of the month (UTC)"),
        ("0 0 * 1,7 *", "At 00:00, every day in January and July (UTC)"),
        ("@weekly", "At 00:00, on Sunday (UTC)"),
        # A day field written from `*` narrows the days too (it said "every day").
        ("0 0 */10 * *", "At 00:00, on day 1, 11, 21 and 31 of the month (UTC)"),
        ("0 0 */10 * MON", "At 00:00, on day 1, 11, 21 and 31 of the month and on Monday (UTC)"),
        ("0 0 * * */2", "At 00:00, on Sunday, Tuesday, Thursday and Saturday (UTC)"),
    ],
)
def test_cron_descriptions(expression: str, description: str) -> None:
    assert cron.describe(cron.parse(expression, "p/nightly")) == description
    paris = cron.describe(cron.parse(expression, "p/nightly"), "Europe/Paris")
    assert paris == description.replace("(UTC)", "(Europe/Paris)")


FIVE_FIELDS = "it needs five (minute hour day-of-month month day-of-week) or a macro such as @daily"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expression must be a cron expression such as '0 3 * * *'"),
        ("   ", "expression must be a cron expression such as '0 3 * * *'"),
        ("* * * *", f"expression '* * * *' has 4 fields; {FIVE_FIELDS}"),
        ("*  * * * * *", f"expression '* * * * * *' has 6 fields; {FIVE_FIELDS}"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* * * * 8", "day of week: 8 is outside 0-7"),
        ("*/0 * * * *", "minute: step must be a positive number in '*/0'"),
        ("*/\u00b2 * * * *", "minute: step must be a positive number in '*/\u00b2'"),
        ("5-1 * * * *", "minute: range '5-1' runs backwards"),
        ("* * * FOO *", "month: 'FOO' is not a number or name in 'FOO'"),
        ("\u0661 * * * *", "minute: '\u0661' is not a number or name in '\u0661'"),
        ("1,,2 * * * *", "minute: empty list item in '1,,2'"),
        ("0 0 L * *", "day of month: 'L' is not a number or name in 'L'"),
        ("0 0 * * MON#2", "day of week: 'MON#2' is not a number or name in 'MON#2'"),
        ("* * * * *\x00", "day of week: '*\\x00' is not a number or name in '*\\x00'"),
        (
            "@every_minute",
            "unknown macro '@every_minute' (macros: @yearly, @annually, @monthly, @weekly, "
            "@daily, @midnight, @hourly)",
        ),
        ("H(5) * * * *", "minute: expected a range a-b in 'H(5)'"),
        ("H(9-3) * * * *", "minute: range '9-3' runs backwards"),
        ("H(0-60) * * * *", "minute: 60 is outside 0-59"),
    ],
)
def test_cron_error_messages_in_full(expression: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        cron.parse(expression)
    assert str(caught.value) == message


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_cron_never_firing_expressions_say_so(expression: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        cron.check_fires(cron.parse(expression))
    assert str(caught.value) == f"expression {expression!r} never fires"
    assert cron.next_due(cron.parse(expression), START, UTC_ZONE) is None


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 12 *", "0 0 30 2 MON", "0 0 31 * *"])
def test_cron_rarely_firing_expressions_are_accepted(expression: str) -> None:
    cron.check_fires(cron.parse(expression))


def test_cron_expression_is_normalised() -> None:
    assert cron.parse("  0   3 * *  *").expression == "0 3 * * *"
    assert cron.parse("@DAILY").expression == "@DAILY"
    assert due("@DAILY") == due("0 0 * * *")


# Found when the search moved to cronsim: the hand-written one started an hour early and took the
# first wall-clock match, which lost due times in repeated hours and longer changes of the clocks.


@pytest.mark.parametrize(
    ("expression", "after", "zone", "expected"),
    [
        # The repeated hour, every 20 minutes: all six, from inside the first pass.
        (
            "*/20 * * * *",
            datetime(2026, 11, 1, 5, 10, tzinfo=UTC),  # 01:10 EDT
            "America/New_York",
            [
                "2026-11-01T01:20:00-04:00",
                "2026-11-01T01:40:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:20:00-05:00",
                "2026-11-01T01:40:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ],
        ),
        (
            "* * * * *",
            datetime(2026, 10, 25, 0, 57, tzinfo=UTC),  # 02:57 CEST, a minute before 02:00 CET
            "Europe/Paris",
            ["2026-10-25T02:58:00+02:00", "2026-10-25T02:59:00+02:00", "2026-10-25T02:00:00+01:00"],
        ),
        # Troll's clocks move by two hours.
        (
            "*/15 * * * *",
            datetime(2027, 10, 30, 23, 6, 30, tzinfo=UTC),
            "Antarctica/Troll",
            ["2027-10-31T01:15:00+02:00", "2027-10-31T01:30:00+02:00", "2027-10-31T01:45:00+02:00"],
        ),
        (
            "30 2 * * *",
            datetime(2027, 3, 28, 1, 34, tzinfo=UTC),  # 01:00 jumps to 03:00; 02:30 moves to 04:30
            "Antarctica/Troll",
            ["2027-03-28T04:30:00+02:00", "2027-03-29T02:30:00+02:00"],
        ),
        # Samoa skipped 30 December 2011: its hourly times fire shifted by the day, once each.
        (
            "30 * * * *",
            datetime(2011, 12, 30, 10, 1, 30, tzinfo=UTC),  # 00:01 on 31 December
            "Pacific/Apia",
            ["2011-12-31T00:30:00+14:00", "2011-12-31T01:30:00+14:00", "2011-12-31T02:30:00+14:00"],
        ),
    ],
)
def test_cron_changes_of_the_clocks_lose_no_due_time(
    expression: str, after: datetime, zone: str, expected: list[str]
) -> None:
    assert due(expression, after, zone, len(expected)) == expected


def test_cron_rare_days_are_found_beyond_nine_years() -> None:
    # 29 February on a Sunday: 2032, then 2060 (the search gave up after nine years).
    assert due("0 0 29 2 */7", datetime(2033, 1, 1, tzinfo=UTC), count=1) == [
        "2060-02-29T00:00:00+00:00"
    ]
