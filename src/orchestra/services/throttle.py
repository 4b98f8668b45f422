"""Login throttling per user and per client address.

A sliding window of failures: past the limit, logins for that key are refused with 429 until
the oldest failure leaves the window. Unknown users count like known ones, so the answers do
not reveal which users exist. The window lives in this process: with several API servers each
keeps its own, which bounds an attacker to N times the limit (documented in docs/security.md).
"""

from __future__ import annotations

import time
from collections import deque

from orchestra.errors import TooManyRequests


class LoginThrottle:
    def __init__(
        self, *, per_user: int = 10, per_address: int = 50, window_seconds: float = 900.0
    ) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window = window_seconds
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def check(self, user: str, address: str) -> None:
        """Raise TooManyRequests if either the user or the address is over its limit."""
        now = time.monotonic()
        for kind, value in (("user", user), ("address", address)):
            failures = self._recent((kind, value), now)
            if len(failures) >= self.limits[kind]:
                wait = int(failures[0] + self.window - now) + 1
                raise TooManyRequests(f"too many failed logins; try again in {wait} seconds")

    def failed(self, user: str, address: str) -> None:
        now = time.monotonic()
        for kind, value in (("user", user), ("address", address)):
            self._recent((kind, value), now).append(now)
        if len(self._failures) > 100_000:
            self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, user: str) -> None:
        self._failures.pop(("user", user), None)
