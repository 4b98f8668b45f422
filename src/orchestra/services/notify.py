"""Carry event topics between processes through PostgreSQL LISTEN/NOTIFY.

Each process keeps one connection that LISTENs (outside any pool, so a pooler cannot steal it)
and one that sends NOTIFYs, batching the topics published meanwhile (and, after each NOTIFY, for
a few milliseconds more). A process's own
notifications come back to its listener too; they are dropped there (the topics were published
here already), since each would wake this process's waiters a second time: on a busy master, a
dispatch pass for nothing after every batch. When PostgreSQL is away, both reconnect with
backoff; the waiters' polling covers the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
import sqlalchemy as sa

from orchestra.services.events import Events

log = logging.getLogger(__name__)
CHANNEL = "orchestra_events"
MAX_PAYLOAD = 7000  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
SEPARATOR = "\n"  # between the topics of one payload (no topic holds a newline)
RETRY_CAP = 10.0
# After a NOTIFY goes out, the topics published in the next few milliseconds wait for the end of
# that window and go out together: under load, one NOTIFY (a round trip, and a wake-up of every
# listening process) carries a dozen runs' topics instead of one; a lone topic goes at once.
COALESCE_SECONDS = 0.02


def libpq_url(url: str) -> str:
    parsed = sa.engine.make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


class PostgresBridge:
    def __init__(self, url: str, events: Events) -> None:
        self.url = libpq_url(url)
        self.events = events
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()
        self._sender_pid: int | None = None  # the backend of our NOTIFY connection

    async def start(self) -> None:
        self.events.forward_to(self._queue)
        self._tasks = [
            asyncio.create_task(self._retrying(self._listen), name="notify-listen"),
            asyncio.create_task(self._retrying(self._send), name="notify-send"),
        ]

    async def stop(self) -> None:
        self.events.forward_to(None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _queue(self, topic: str) -> None:
        if len(topic.encode()) < MAX_PAYLOAD and SEPARATOR not in topic:
            self._pending.add(topic)
            self._wake.set()

    async def _retrying(self, loop: object) -> None:
        delay = 0.5
        while True:
            try:
                await loop()  # type: ignore[operator]
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("LISTEN/NOTIFY connection lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_CAP, delay * 2)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            async for notification in conn.notifies():
                if notification.pid == self._sender_pid:
                    continue  # ours: published here when it was sent
                for topic in notification.payload.split(SEPARATOR):
                    if topic:
                        self.events.publish(topic, remote=False)

    async def _send(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            self._sender_pid = conn.info.backend_pid
            while True:
                await self._wake.wait()
                self._wake.clear()
                topics, self._pending = sorted(self._pending), set()
                for payload in payloads(topics):
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                await asyncio.sleep(COALESCE_SECONDS)


def payloads(topics: list[str]) -> list[str]:
    """The topics packed into as few NOTIFY payloads as fit (one statement each, instead of
    one per topic), each under PostgreSQL's limit."""
    packed: list[str] = []
    current: list[str] = []
    size = 0
    for topic in topics:
        length = len(topic.encode())
        if current and size + 1 + length >= MAX_PAYLOAD:
            packed.append(SEPARATOR.join(current))
            current, size = [], 0
        size += length + (1 if current else 0)
        current.append(topic)
    if current:
        packed.append(SEPARATOR.join(current))
    return packed
