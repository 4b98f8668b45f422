"""orchestra.domain.durations and orchestra.domain.schedules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestra.domain.durations import parse_duration
from orchestra.domain.schedules import check_expression
from orchestra.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("30s", 30), ("2m", 120), ("1.5h", 5400), ("7d", 604800)]
)
def test_duration_parses_seconds_and_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "-1", "1w", "abc", "1e9d", "s"])
def test_duration_refuses_bad_values(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_schedule_expression_accepts_five_fields_and_macros() -> None:
    assert check_expression("0  3 * * *") == "0 3 * * *"
    assert check_expression("@hourly") == "@hourly"
    assert check_expression("@daily") == "@daily"


@pytest.mark.parametrize("raw", ["", "* * * *", "* * * * * *", "60 * * * *", "@often", 5, None])
def test_schedule_expression_refuses_bad_values(raw: object) -> None:
    with pytest.raises(InvalidInput):
        check_expression(raw)
