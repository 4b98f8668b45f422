"""In-process signals between the API, the dispatcher and log followers.

A topic is a name ("dispatch", "control", "run:ID"); publishing wakes everyone waiting on it.
Signals carry no data: the database is the source of truth, a signal only says "look again".
With several processes, PostgreSQL LISTEN/NOTIFY feeds the same topics, and every waiter also
polls with a timeout, so a lost signal costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib


class Events:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def publish(self, topic: str) -> None:
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()

    async def wait(self, topic: str, timeout: float) -> bool:
        """Wait until `topic` is published or `timeout` passes; True if it was published."""
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
            return True
        return False
