"""When a call is tried again, and after how long: exponential backoff with full jitter,
bounded in tries and in each wait.

A 502, 503 or 504 says a proxy, or the server with its database away, could not answer for
now. An idempotent method (GET, PUT, DELETE...) is tried again after one of those, and after a
connection that failed or dropped. A POST is tried again only where it cannot have been done:
a 503 (the server refused it before doing anything) or a connection that was never made; a 502
or 504 may come after the server did the work (a run triggered), so it is not repeated."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

UNAVAILABLE = frozenset({502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` tries after the first; the n-th waits a random time up to
    min(max_delay, base_delay * 2**n), or what the server's Retry-After asks (capped)."""

    retries: int = 4
    base_delay: float = 0.25
    max_delay: float = 5.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        asked = _retry_after(response)
        if asked is not None:
            return min(asked, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def retries_answer(method: str, status: int) -> bool:
    """Whether an answer with this status is worth trying again."""
    if status not in UNAVAILABLE:
        return False
    return method.upper() in IDEMPOTENT or status == 503


def retries_failure(method: str, error: httpx.TransportError) -> bool:
    """Whether a request that got no answer is worth trying again."""
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return True  # never sent: safe for any method
    return method.upper() in IDEMPOTENT


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date: our own backoff then
