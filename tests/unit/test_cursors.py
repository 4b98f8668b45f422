"""orchestra.storage.records cursors: what clients send back must decode or be refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from orchestra.errors import InvalidInput
from orchestra.storage.records import check_limit, decode_cursor, encode_cursor


def cursor_of(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_cursor_round_trips_dates_and_identifiers() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    cursor = encode_cursor([when, "abc"])
    assert "=" not in cursor
    assert decode_cursor(cursor, (datetime, str)) == [when, "abc"]


def test_cursor_dates_come_back_in_utc() -> None:
    when = datetime(2024, 5, 6, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    decoded = decode_cursor(cursor_of([when.isoformat(), "x"]), (datetime, str))
    assert decoded[0] == when
    assert decoded[0].utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        cursor_of({"a": 1}),
        cursor_of(["x"]),
        cursor_of([1, "x"]),
        cursor_of(["2024-01-01T00:00:00", "x"]),  # naive
        cursor_of(["0001-01-01T00:00:00+14:00", "x"]),  # before year 1 in UTC
        cursor_of(["9999-12-31T23:59:59-14:00", "x"]),  # after year 9999 in UTC
        cursor_of(["2024-01-01T00:00:00Z", 5]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_cursor_refuses_what_it_did_not_make(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="invalid cursor"):
        decode_cursor(cursor, (datetime, str))


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_limit_out_of_range_is_refused(limit: int) -> None:
    with pytest.raises(InvalidInput):
        check_limit(limit)
    assert check_limit(None) == 50
    assert check_limit(500) == 500


@pytest.mark.parametrize("value", [10**30, -(2**63) - 1, 2**63, True, 1.5, "7"])
def test_integer_cursor_refuses_what_no_database_column_holds(value: object) -> None:
    with pytest.raises(InvalidInput, match="invalid cursor"):
        decode_cursor(cursor_of([value]), (int,))
    assert decode_cursor(cursor_of([2**63 - 1]), (int,)) == [2**63 - 1]
