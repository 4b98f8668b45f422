"""Signals between the API, the dispatcher, the scheduler and log followers.

A topic is a name ("dispatch", "control", "run:ID"); publishing wakes everyone waiting on it.
Signals carry no data: the database is the source of truth, a signal only says "look again".
A signal published while nobody waits is kept until the next wait on its topic, so a loop that
looks at the database and then waits cannot miss a change made in between. With several
processes on PostgreSQL, a bridge (services/notify.py) carries every topic to the other
processes through LISTEN/NOTIFY; every waiter also polls with a timeout, so a lost signal costs
latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

# Signals kept for topics nobody waits on (run:ID of runs nobody follows) are bounded.
MAX_KEPT = 10_000


class Events:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._forward: Callable[[str], None] | None = None
        # Set by every publish: the live event stream's one reader (web/event_hub.py) waits on
        # it, whatever the topic.
        self._any = asyncio.Event()

    def forward_to(self, sender: Callable[[str], None] | None) -> None:
        """Also hand every topic published here to `sender` (the bridge to other processes)."""
        self._forward = sender

    def publish(self, topic: str, *, remote: bool = True) -> None:
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
            if len(self._events) > MAX_KEPT:
                self._forget_unwatched()
        event.set()
        self._any.set()
        if remote and self._forward is not None:
            self._forward(topic)

    async def wait(self, topic: str, timeout: float) -> bool:
        """Wait until `topic` is published (or was, since the last wait) or `timeout` passes;
        True if it was published."""
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        if not event.is_set():
            # asyncio.timeout, not wait_for: the waiter wakes in the loop's next turn after
            # the publish (wait_for's inner task took one more turn).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await event.wait()
        if not event.is_set():
            return False
        if self._events.get(topic) is event:
            del self._events[topic]  # consumed: the next wait waits for the next signal
        return True

    async def wait_any(self, timeout: float) -> bool:
        """Wait until any topic is published (or was, since the last call) or `timeout`
        passes; True if one was. For one waiter only (the event stream's reader)."""
        if not self._any.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._any.wait()
        published = self._any.is_set()
        self._any.clear()
        return published

    def _forget_unwatched(self) -> None:
        """Drop the oldest half of the signals already given (nobody waits on a set event)."""
        kept = [t for t, e in self._events.items() if e.is_set()]
        for topic in kept[: len(kept) // 2]:
            del self._events[topic]
