"""The worker endpoint: one WebSocket connection per worker, from its hello to its going.

A connection is authenticated (a token with the worker role), its hello read, the worker
registered and its runs reconciled (services/worker_registry.py), and then its frames read by
one task while its reports are applied by another (services/report_applier.py), so that the
next frame is read and decoded while the previous report commits. A connection's silence is
watched by one timer per connection, not per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from orchestra.domain.authorization import credentials_from_header
from orchestra.domain.identifiers import check_text
from orchestra.domain.permissions import Action
from orchestra.errors import Conflict, Forbidden, InvalidInput, ProtocolError
from orchestra.master.session import RIDE_SECONDS, Sessions, WorkerSession
from orchestra.master.transport import heartbeats_in_place
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.control_queries import ControlQueries
from orchestra.services.report_applier import ReportApplier
from orchestra.services.worker_registry import WorkerRegistry

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 10.0
REPORT_QUEUE = 4  # reports received ahead of the one being applied, per connection
MERGE_EVENTS = 1000  # events applied in one transaction at most
MERGE_BYTES = 8 << 20  # and about this much output


class WorkerEndpoint:
    def __init__(
        self,
        services: Services,
        sessions: Sessions,
        registry: WorkerRegistry,
        reports: ReportApplier,
        control: ControlQueries,
        has_backlog: Callable[[], bool],
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.sessions = sessions
        self.registry = registry
        self.reports = reports
        self.control = control
        # Whether the last dispatch pass may have left runs a new worker could take.
        self.has_backlog = has_backlog
        # Identifiers whose connection is being registered here (a second one is refused).
        self.opening: set[str] = set()

    async def connect(self, websocket: WebSocket, receive: Any = None) -> None:
        """Serve one worker's connection until it goes. `receive`: the server's own ASGI
        receive callable, when the connection came straight from the server (its protocol
        then takes heartbeats in place); otherwise the WebSocket's."""
        given = credentials_from_header(websocket.headers.get("authorization", ""))
        users = self.services.users
        caller = (
            await users.authenticate(given.secret, given.user) if given and given.secret else None
        )
        origin = websocket.headers.get("origin")
        if origin is not None and not _same_origin(origin, websocket.headers.get("host", "")):
            await websocket.close(code=m.CLOSE_FORBIDDEN, reason="cross-site connection refused")
            return
        if caller is None or not caller.access.may(Action.WORKER_CONNECT):
            await websocket.close(code=m.CLOSE_UNAUTHORIZED, reason="a worker token is needed")
            return
        await websocket.accept()
        session = None
        try:
            hello = await self._hello(websocket)
            session = await self._open(websocket, caller.user.identifier, hello)
            session.token = caller.token
            await self._serve(session, receive or websocket.receive)
        except ProtocolError as exc:
            log.warning("worker connection closed: %s", printable(str(exc)))
            await _close(websocket, m.CLOSE_PROTOCOL_ERROR, str(exc))
        except Forbidden as exc:
            log.warning("worker connection refused: %s", printable(str(exc)))
            await _close(websocket, m.CLOSE_FORBIDDEN, str(exc))
        except Conflict as exc:
            log.warning("worker connection refused: %s", printable(str(exc)))
            await _close(websocket, m.CLOSE_IN_USE, str(exc))
        except TimeoutError:
            await _close(websocket, m.CLOSE_PROTOCOL_ERROR, "no message within three heartbeats")
        except WebSocketDisconnect:
            pass
        except (OperationalError, DBAPIError) as exc:
            log.warning("worker connection closed: the database failed: %s", exc.orig or exc)
            await _close(websocket, 1011, "the master's database is unavailable; retry later")
        except Exception:
            # A fault of the master's, not of the frame (frames are checked when decoded).
            log.exception("worker connection closed: the master failed")
            await _close(websocket, 1011, "the master failed; retry later")
        finally:
            if session is not None and self.sessions.get(session.identifier) is session:
                del self.sessions[session.identifier]
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.registry.disconnected(session.identifier))
                log.info("worker %s disconnected", session.identifier)

    async def _hello(self, websocket: WebSocket) -> m.Hello:
        event = await asyncio.wait_for(websocket.receive(), HELLO_TIMEOUT)
        if event["type"] != "websocket.receive":
            raise WebSocketDisconnect(event.get("code", 1000), event.get("reason"))
        text = event.get("text")
        # A binary frame is decoded too (as a report, so refused here with a reason).
        hello = m.decode_worker_message(text if text is not None else event["bytes"])
        if not isinstance(hello, m.Hello):
            raise ProtocolError("the first message must be hello")
        try:
            check_text(hello.display_name, "display_name", max_length=200)
        except InvalidInput as exc:
            raise ProtocolError(f"invalid message: hello.display_name: {exc}") from None
        if hello.protocol != m.PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol {hello.protocol} is not supported (this master speaks "
                f"{m.PROTOCOL_VERSION}); upgrade the worker"
            )
        return hello

    async def _open(self, websocket: WebSocket, owner: str, hello: m.Hello) -> WorkerSession:
        """Register the worker, unless its identifier is live (Conflict): connected here and
        heard from lately, or being registered here, or connected to another master that
        vouched for it lately (services/worker_registry.py)."""
        identifier = hello.identifier
        held = self.sessions.get(identifier)
        if held is not None and held.owner != owner:
            raise Forbidden(f"worker {identifier!r} belongs to another user")
        if identifier in self.opening or self._live_here(identifier):
            raise Conflict(
                f"worker {identifier!r} is connected already; a second connection is refused"
            )
        self.opening.add(identifier)
        try:
            return await self._register(websocket, owner, hello)
        finally:
            self.opening.discard(identifier)

    def _live_here(self, identifier: str) -> bool:
        """Whether this master holds a connection of the worker that it heard from within two
        heartbeat intervals. One silent longer (its network cut, its peer gone without a word)
        is about to be closed for its silence (three intervals): a newer connection of the
        worker replaces it rather than wait."""
        session = self.sessions.get(identifier)
        if session is None:
            return False
        silent = asyncio.get_running_loop().time() - session.last_heard()
        return silent < 2 * self.settings.heartbeat_interval

    async def _register(self, websocket: WebSocket, owner: str, hello: m.Hello) -> WorkerSession:
        # A worker with no connection here (the usual case) is registered and reconciled in
        # one transaction. One replacing a silent connection has that one closed first, then
        # its runs reconciled, so that nothing is assigned to the old connection after the
        # decisions (also when a replaced connection appeared meanwhile).
        together = hello.identifier not in self.sessions
        is_enabled, decisions = await self.registry.register(
            owner,
            hello,
            reconcile=together,
            live_for=3 * self.settings.heartbeat_interval,
            require_approval=self.settings.require_worker_approval,
        )
        previous = self.sessions.pop(hello.identifier, None)
        if previous is not None:
            await previous.close(m.CLOSE_REPLACED, "replaced by a newer connection")
        if decisions is None or previous is not None:
            decisions = await self.registry.reconcile(hello.identifier, hello.runs)
        session = WorkerSession(
            identifier=hello.identifier,
            owner=owner,
            properties=dict(hello.properties),
            executors=hello.executors,
            websocket=websocket,
            is_enabled=is_enabled,
            assigned={r for r, d in decisions.items() if d.action == "resume"},
            last_seen=asyncio.get_running_loop().time(),
        )
        welcome = m.Welcome(heartbeat_interval=self.settings.heartbeat_interval, runs=decisions)
        await session.send(welcome)
        self.sessions[hello.identifier] = session
        log.info("worker %s connected (%d runs resumed)", hello.identifier, len(session.assigned))
        if self.has_backlog():
            # Pending runs may be waiting for this worker. Otherwise a new run signals
            # "dispatch" itself, and runs becoming due by time are the periodic pass's.
            self.services.events.publish("dispatch")
        # Aborts requested while the worker was away: sent now, to this worker only (a
        # global control pass per connection would cost O(workers) each, O(n²) in a storm).
        # Only a run it resumed can be one: a worker holding none needs no query.
        if session.assigned:
            for _worker, run in await self.control.runs_to_abort([hello.identifier]):
                if await session.send(m.Abort(run=run)):
                    session.aborts_sent.add(run)
        return session

    async def _serve(self, session: WorkerSession, receive: Any) -> None:
        """Read the worker's frames until it goes, in a task of their own (each frame then
        resumes a short stack, not the whole ASGI application's); reports go to an applier
        task, so that the next frame is read and decoded while the previous report commits."""
        reports: asyncio.Queue[m.Report] = asyncio.Queue(REPORT_QUEUE)
        applier = asyncio.create_task(self._apply_reports(session, reports))
        reader = asyncio.create_task(self._read(session, reports, receive))
        try:
            await asyncio.wait((reader, applier), return_when=asyncio.FIRST_COMPLETED)
            if applier.done():
                applier.result()  # its failure ends the connection (a clean end cannot be)
            reader.result()
        finally:
            reader.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await reader
            if not applier.done():
                # Let the report being applied commit (it was received whole); drop the
                # queued ones: the worker sends them again after it reconnects.
                session.closing = True
                while not reports.empty():
                    reports.get_nowait()
                reports.put_nowait(_STOP)
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(applier)

    async def _read(
        self, session: WorkerSession, reports: asyncio.Queue[m.Report], receive: Any
    ) -> None:
        loop = asyncio.get_running_loop()
        websocket = session.websocket
        # Heartbeats are taken by the server's protocol, when it is ours, and only leave
        # their time there.
        protocol = heartbeats_in_place(receive)
        session.transport = protocol
        silence = 3 * self.settings.heartbeat_interval
        session.last_seen = loop.time()
        watchdog: asyncio.TimerHandle | None = None
        # No timer per message: one per connection checks, when the last frame is `silence`
        # old, whether another came since, and ends the wait if not (TimeoutError).
        async with asyncio.timeout(None) as deadline:

            def watch() -> None:
                nonlocal watchdog
                seen = session.last_seen
                if protocol is not None and protocol.last_heartbeat > seen:
                    seen = protocol.last_heartbeat
                due = min(seen, loop.time()) + silence
                if loop.time() >= due:
                    deadline.reschedule(loop.time())
                else:
                    watchdog = loop.call_at(due, watch)

            watchdog = loop.call_at(session.last_seen + silence, watch)
            try:
                while True:
                    event = await receive()
                    if event["type"] != "websocket.receive":
                        websocket.client_state = WebSocketState.DISCONNECTED
                        raise WebSocketDisconnect(event.get("code", 1000), event.get("reason"))
                    session.last_seen = loop.time()
                    text = event.get("text")
                    message = m.decode_worker_message(text if text is not None else event["bytes"])
                    if isinstance(message, m.Report):
                        if reports.full():
                            # Waiting for the database is not the worker's silence.
                            session.last_seen = float("inf")
                            await reports.put(message)
                            session.last_seen = loop.time()
                        else:
                            reports.put_nowait(message)
                    elif isinstance(message, m.Capacity):
                        self._capacity(session, message)
                    elif isinstance(message, m.Hello):
                        raise ProtocolError("hello was already received")
            finally:
                if watchdog is not None:
                    watchdog.cancel()

    def _capacity(self, session: WorkerSession, message: m.Capacity) -> None:
        session.accepting = message.accepting
        log.warning(
            "worker %s %s new runs%s",
            session.identifier,
            "takes" if message.accepting else "takes no",
            f": {printable(message.reason)}" if message.reason else "",
        )
        if message.accepting:
            self.services.events.publish("dispatch")

    async def _apply_reports(
        self, session: WorkerSession, reports: asyncio.Queue[m.Report]
    ) -> None:
        """Apply reports in the order received; consecutive ones for the same run in one
        transaction, acknowledged together."""
        carried: m.Report | None = None
        while True:
            report = carried if carried is not None else await reports.get()
            carried = None
            if report is _STOP or session.closing:
                return
            events = list(report.events)
            size = _output_size(report)
            while not reports.empty() and len(events) < MERGE_EVENTS and size < MERGE_BYTES:
                following = reports.get_nowait()
                if following is _STOP or following.run != report.run:
                    carried = following
                    break
                events.extend(following.events)
                size += _output_size(following)
            if len(events) > len(report.events):
                report = m.Report.model_construct(run=report.run, events=events)
            await self._report(session, report)

    async def _report(self, session: WorkerSession, report: m.Report) -> None:
        result = await self.reports.report(session.identifier, report)
        ack = m.Ack(run=report.run, sequence=result.acknowledged)
        if result.discard_reason is not None:
            await session.send(ack)
            session.assigned.discard(report.run)
            await session.send(m.Discard(run=report.run, reason=result.discard_reason))
        elif result.finished:
            # The run's last acknowledgement only lets the worker drop its journal: it waits
            # (RIDE_SECONDS at most) to go out with the freed executor's next assignment,
            # one write for both.
            await session.send_soon(ack, RIDE_SECONDS)
            session.assigned.discard(report.run)
            session.aborts_sent.discard(report.run)
            self.services.events.publish("dispatch")
            if session.draining and not session.assigned:
                await session.close(m.CLOSE_DISCONNECT_REQUESTED, "disconnect requested")
        else:
            await session.send(ack)  # the worker's send window waits for it


_STOP = m.Report.model_construct(run="", events=[])


def _output_size(report: m.Report) -> int:
    return sum(len(e.data) for e in report.events if isinstance(e, m.StepOutput))


def printable(text: str) -> str:
    """Text from a worker as it may go into the master's log: control characters (a newline
    would start a forged line) and lone surrogates escaped, the rest as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _same_origin(origin: str, host: str) -> bool:
    return origin.split("://", 1)[-1].rstrip("/") == host


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    # A close frame's reason holds 123 bytes of UTF-8 at most.
    shown = printable(reason).encode()[:120].decode(errors="ignore")
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=shown)
