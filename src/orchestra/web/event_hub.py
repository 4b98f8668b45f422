"""The live event stream's fan-out: one reader per server process follows the change log and
hands each event, encoded once, to every connected client that may read it.

The reader wakes on any signal published in this process (services/events.py; with several
servers on PostgreSQL the LISTEN/NOTIFY bridge brings the others' signals), and at least every
POLL_SECONDS, reads the new rows after its cursor (services/event_stream.py's LogCursor: no
id skipped while it may still commit), loads the objects they name in one query per kind,
encodes each event's frame once and offers it to the clients. A client's queue is bounded:
a client that does not keep up is dropped (it resumes with Last-Event-ID), so a slow reader
never holds the others or grows the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

from orchestra.domain.access import Access
from orchestra.domain.models import Run, Schedule, Worker
from orchestra.domain.permissions import Action
from orchestra.services import event_stream
from orchestra.services.container import Services
from orchestra.services.event_stream import Event

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # the reader looks even without a signal (a lost one costs this much)
GAP_POLL_SECONDS = 0.05  # while a missing id holds events back
MIN_INTERVAL = 0.002  # between two reads of the log, under a stream of signals
QUEUE_FRAMES = 2000  # a client this far behind is dropped
RESET = "reset"
CATCH_UP_FRAMES = 5000  # a resumed client gets at most about this many at once


@dataclass(eq=False)
class Client:
    """One connected stream: what it may read, its filter and its queue of frames (None: it
    was dropped)."""

    access: Access
    project: str | None = None
    after: int = 0  # send only events after this id (set by a resumed client's catch-up)
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_FRAMES))
    dropped: bool = False
    # may_read's answers by (worker or not, project): asked per event and client, it is the
    # fan-out's inner loop.
    _allowed: dict[tuple[bool, str | None], bool] = field(default_factory=dict)

    def wants(self, event: Event) -> bool:
        if event.identifier <= self.after:
            return False
        key = (event.kind == "worker", event.project)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = self._allowed[key] = may_read(self.access, event, self.project)
        return allowed

    def rights_changed(self, access: Access) -> None:
        """The caller's rights as checked again."""
        self.access = access
        self._allowed.clear()

    def offer(self, frame: bytes) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped = True
            # Room for the end mark: the client's reader ends its response at it.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


def may_read(access: Access, event: Event, project: str | None) -> bool:
    """Whether a caller with `access`, filtering on `project` (None: all), gets the event."""
    if event.kind == "worker":
        return project is None and access.may(Action.WORKER_READ)
    if event.project is None or (project is not None and event.project != project):
        return False
    return access.may(Action.RUN_READ, event.project)


def frame(identifier: int | None, type_: str, data: bytes) -> bytes:
    head = b"" if identifier is None else b"id: %d\n" % identifier
    return head + b"event: " + type_.encode() + b"\ndata: " + data + b"\n\n"


KEEP_ALIVE = b": keep-alive\n\n"


class Encoder:
    """Each object as the API shows it, as JSON bytes (given by the web layer, which knows the
    API's shapes: web/api/events.py)."""

    def __init__(
        self,
        run: Callable[[Run], Any],
        worker: Callable[[Worker], Any],
        schedule: Callable[[Schedule], Any],
    ) -> None:
        self.run = run
        self.worker = worker
        self.schedule = schedule

    def data(self, event: Event, found: Any) -> bytes:
        if found is None:
            gone = {"identifier": event.subject, "project": event.project, "deleted": True}
            return json.dumps(gone).encode()
        if event.kind == "run":
            shown = self.run(found)
        elif event.kind == "worker":
            shown = self.worker(found)
        elif event.kind == "schedule":
            shown = self.schedule(found)
        else:
            shown = found  # a pipeline run is shown as a dict already
        return pydantic_core.to_json(shown)


class Hub:
    """The one reader of a server process and its clients."""

    def __init__(self, services: Services, encoder: Encoder) -> None:
        self.services = services
        self.encoder = encoder
        self.clients: set[Client] = set()
        # The clients by the project they filter on (None: all): an event is offered only to
        # those that may want it, so a thousand clients watching quiet projects cost a busy
        # one's events nothing.
        self._watching: dict[str | None, set[Client]] = {}
        self.cursor: event_stream.LogCursor | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.handed = 0  # the last id handed to the clients (every later event goes to them)
        self.events_sent = 0

    async def attach(self, client: Client) -> int:
        """Register a client; the position from which the reader hands it events (a resumed
        client catches up to it from the log: `catch_up`)."""
        self.register(client)
        if self._task is None or self._task.done():
            self._started = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="event-stream-reader")
        await self._started.wait()
        return self.handed

    def register(self, client: Client) -> None:
        """Count the client among those the reader hands events to."""
        self.clients.add(client)
        self._watching.setdefault(client.project, set()).add(client)

    def detach(self, client: Client) -> None:
        self.clients.discard(client)
        watching = self._watching.get(client.project)
        if watching is not None:
            watching.discard(client)
            if not watching:
                del self._watching[client.project]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        services = self.services
        try:
            while True:
                try:
                    async with services.db.read() as conn:
                        _, newest = await event_stream.bounds(conn)
                    break
                except Exception:  # the database away: clients wait, the reader tries again
                    log.exception("event stream: reading the change log failed")
                    await asyncio.sleep(POLL_SECONDS)
            # Where the reader starts (again): what came before is the resumed clients'
            # catch-up's, read from the log.
            position = newest or 0
            if self.cursor is not None:
                position = max(self.cursor.position, position)
            self.cursor = event_stream.LogCursor(position)
            self.handed = self.cursor.position
            self._started.set()
            while self.clients:
                timeout = GAP_POLL_SECONDS if self.cursor.waiting else POLL_SECONDS
                await services.events.wait_any(timeout)
                started = time.monotonic()
                try:
                    await self._pass()
                except Exception:  # the database away: the next pass tries again
                    log.exception("event stream: reading the change log failed")
                    await asyncio.sleep(POLL_SECONDS)
                await asyncio.sleep(max(0.0, MIN_INTERVAL - (time.monotonic() - started)))
        finally:
            self._started.set()

    async def _pass(self) -> None:
        """Read and hand out every event there is now."""
        assert self.cursor is not None
        while True:
            async with self.services.db.read() as conn:
                events = await self.cursor.read(conn)
                if not events:
                    return
                found = await event_stream.load(conn, events)
            self.publish(self.frames(events, found))
            if len(events) < event_stream.BATCH:
                return

    def frames(
        self, events: Sequence[Event], found: Mapping[tuple[str, str, str | None], Any]
    ) -> list[tuple[Event, bytes]]:
        encoded: dict[tuple[str, str, str | None], bytes] = {}
        result = []
        for event in events:
            key = (event.kind, event.subject, None if event.kind == "worker" else event.project)
            data = encoded.get(key)
            if data is None:
                data = encoded[key] = self.encoder.data(event, found.get(key))
            result.append((event, frame(event.identifier, event.type, data)))
        return result

    def publish(self, frames: Sequence[tuple[Event, bytes]]) -> None:
        everything = self._watching.get(None, set())
        for event, encoded in frames:
            targets = list(everything)
            if event.kind != "worker" and event.project is not None:
                targets += self._watching.get(event.project, ())
            for client in targets:
                if not client.dropped and client.wants(event):
                    client.offer(encoded)
                    if client.dropped:
                        self.detach(client)
        self.events_sent += len(frames)
        if frames:
            self.handed = frames[-1][0].identifier

    async def catch_up(self, client: Client, after: int, through: int) -> tuple[list[bytes], bool]:
        """A resumed client's missed events after `after` through `through` (what the reader
        had handed out when it attached), as frames, read from the log in batches; and whether
        that was all (else the client is sent what was read, then resumes again)."""
        result: list[bytes] = []
        position = after
        while position < through:
            async with self.services.db.read() as conn:
                events = await event_stream.read_between(conn, position, through)
                if not events:
                    break
                found = await event_stream.load(conn, events)
            position = events[-1].identifier
            result += [f for e, f in self.frames(events, found) if client.wants(e)]
            if len(result) > CATCH_UP_FRAMES and position < through:
                return result, False
        return result, True

    async def known(self, after: int) -> bool:
        """Whether the stream can resume after id `after` without loss: the rows after it are
        still kept, and the id was given."""
        async with self.services.db.read() as conn:
            oldest, newest = await event_stream.bounds(conn)
        if newest is None:
            return after == 0
        if after > newest:
            return False
        return oldest is None or after >= oldest - 1
