"""Signals between the API, the dispatcher, the scheduler and log followers.

A topic is a name ("dispatch", "control", "run:ID"); publishing wakes everyone waiting on it.
Signals carry no data: the database is the source of truth, a signal only says "look again".
With several processes on PostgreSQL, a bridge (services/notify.py) carries every topic to the
other processes through LISTEN/NOTIFY; every waiter also polls with a timeout, so a lost signal
costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Events:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._forward: Callable[[str], None] | None = None

    def forward_to(self, sender: Callable[[str], None] | None) -> None:
        """Also hand every topic published here to `sender` (the bridge to other processes)."""
        self._forward = sender

    def publish(self, topic: str, *, remote: bool = True) -> None:
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()
        if remote and self._forward is not None:
            self._forward(topic)

    async def wait(self, topic: str, timeout: float) -> bool:
        """Wait until `topic` is published or `timeout` passes; True if it was published."""
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
            return True
        return False
