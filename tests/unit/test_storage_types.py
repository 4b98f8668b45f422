"""Column types: what they store must not depend on which code path encoded it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from orchestra.storage.column_types import UTCDateTime


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 6, 1, 12, 0, tzinfo=UTC),  # no microseconds: still written out
        datetime(2026, 6, 1, 12, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 14, 30, 1, 250000, tzinfo=timezone(timedelta(hours=2))),
        datetime(1, 1, 1, 0, 0, tzinfo=UTC),
    ],
)
def test_sqlite_dates_are_stored_as_sqlalchemy_text(value: datetime) -> None:
    """UTCDateTime's own SQLite encoder writes exactly what SQLAlchemy's DATETIME would have
    written for the same UTC instant (stored dates are compared as text)."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    expected = theirs(value.astimezone(UTC).replace(tzinfo=None))
    assert ours(value) == expected
    assert ours(None) is None


def test_sqlite_refuses_naive_dates() -> None:
    process = UTCDateTime().bind_processor(sqlite.dialect())
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 6, 1, 12, 0))
