"""The test ManualClock keeps the Clock protocol of the real SystemClock."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

from orchestra.clock import Clock, SystemClock
from tests.helpers import ManualClock


def test_manual_clock_has_the_signatures_of_the_system_clock() -> None:
    for name in ("now", "sleep"):
        real = inspect.signature(getattr(SystemClock, name))
        fake = inspect.signature(getattr(ManualClock, name))
        assert list(real.parameters) == list(fake.parameters), name
        assert inspect.iscoroutinefunction(getattr(SystemClock, name)) == (
            inspect.iscoroutinefunction(getattr(ManualClock, name))
        )
    clock: Clock = ManualClock()
    assert clock.now().tzinfo is not None


async def test_manual_clock_moves_only_when_told() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock.now() == start
    clock.advance(5)
    await clock.sleep(1)
    assert (clock.now() - start).total_seconds() == 6
    assert SystemClock().now().tzinfo is UTC
