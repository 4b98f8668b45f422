"""Waiting for a state: poll a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll `condition` every `interval` seconds until it returns something truthy, and return
    that; fail (AssertionError) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def holds_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Check repeatedly, for `seconds`, that `condition` still holds."""
    deadline = time.monotonic() + seconds
    checks = 0
    while True:
        assert condition(), f"{what} stopped holding after {checks} checks"
        checks += 1
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)
