"""The master: holds worker connections, assigns pending runs, applies reports, watches leases.

Three loops run beside the connections: dispatch (on a "dispatch" signal or every second),
control (abort requests and disconnects, on a "control" signal or every 2 s) and maintenance
(vouching for connected workers, pending-run expiry, lease expiry: every heartbeat interval).
A connection's silence is watched by one timer per connection, not per message. The database
is the only
shared state: a master can die at any point and another can carry on from what is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from orchestra.domain.models import Run
from orchestra.domain.permissions import Role, allowed
from orchestra.errors import Forbidden, ProtocolError
from orchestra.master.session import WorkerSession
from orchestra.master.transport import heartbeats_in_place
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.execution import DISPATCH_BATCH, Candidate, ExecutionService
from orchestra.services.retention import RetentionService
from orchestra.services.scheduler import SCHEDULES
from orchestra.services.users import still_allowed
from orchestra.web.auth import authenticate
from orchestra.web.permissions import API, permission_for

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 10.0
LOOP_INTERVAL = 1.0
SCHEDULE_QUEUED_INTERVAL = 0.5
SCHEDULE_POLL = 5.0
CONTROL_POLL = 2.0
ACK_RIDE_SECONDS = 0.02  # a finished run's acknowledgement waits for a frame to go with
REPORT_QUEUE = 4  # reports received ahead of the one being applied, per connection
MERGE_EVENTS = 1000  # events applied in one transaction at most
MERGE_BYTES = 8 << 20  # and about this much output
DISPATCH_PASSES = Counter(
    "orchestra_dispatch_passes", "Dispatch passes: looks at the free executors and pending runs"
)


def master_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Master:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.identity = master_identity()
        self.execution = ExecutionService(
            services.db, services.clock, services.events, services.runs, self.identity
        )
        self.retention = RetentionService(
            services.db, services.clock, self.settings.run_retention_days
        )
        self.sessions: dict[str, WorkerSession] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Whether the last dispatch pass may have left dispatchable runs unassigned (True until
        # a pass found none). A new worker only wakes the dispatcher when it may: with an empty
        # queue, a storm of registrations would otherwise cost a pass over every session each.
        self.backlog = True

    # Life cycle.

    async def start(self) -> None:
        loops = (
            self._dispatch_loop,
            self._control_loop,
            self._maintenance_loop,
            self._schedule_loop,
            self._retention_loop,
        )
        for loop in loops:
            self._tasks.append(asyncio.create_task(self._forever(loop), name=loop.__name__))
        log.info("master %s started", self.identity)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in list(self.sessions.values()):
            await session.close(m.CLOSE_SERVICE_RESTART, "master shutting down")
        log.info("master %s stopped", self.identity)

    async def _forever(self, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("master loop %s failed; retrying", step.__name__)
                await asyncio.sleep(LOOP_INTERVAL)

    # The worker endpoint.

    async def connect(self, websocket: WebSocket) -> None:
        caller = await authenticate(websocket, self.services.users)
        action = permission_for("WEBSOCKET", f"{API}/workers/connect")
        origin = websocket.headers.get("origin")
        if origin is not None and not _same_origin(origin, websocket.headers.get("host", "")):
            await websocket.close(code=m.CLOSE_FORBIDDEN, reason="cross-site connection refused")
            return
        if caller is None or not allowed(caller.user.roles, action):
            await websocket.close(code=m.CLOSE_UNAUTHORIZED, reason="a worker token is needed")
            return
        await websocket.accept()
        session = None
        try:
            hello = await self._hello(websocket)
            session = await self._open(websocket, caller.user.identifier, hello)
            session.token = caller.token
            await self._serve(session)
        except ProtocolError as exc:
            log.warning("worker connection closed: %s", exc)
            await _close(websocket, m.CLOSE_PROTOCOL_ERROR, str(exc))
        except Forbidden as exc:
            await _close(websocket, m.CLOSE_FORBIDDEN, str(exc))
        except TimeoutError:
            await _close(websocket, m.CLOSE_PROTOCOL_ERROR, "no message within three heartbeats")
        except WebSocketDisconnect:
            pass
        except (OperationalError, DBAPIError) as exc:
            log.warning("worker connection closed: the database failed: %s", exc.orig or exc)
            await _close(websocket, 1011, "the master's database is unavailable; retry later")
        finally:
            if session is not None and self.sessions.get(session.identifier) is session:
                del self.sessions[session.identifier]
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.execution.disconnected(session.identifier))
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
        if hello.protocol != m.PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol {hello.protocol} is not supported (this master speaks "
                f"{m.PROTOCOL_VERSION}); upgrade the worker"
            )
        return hello

    async def _open(self, websocket: WebSocket, owner: str, hello: m.Hello) -> WorkerSession:
        # A worker with no connection here (the usual case) is registered and reconciled in
        # one transaction. One replacing a connection has that one closed first, then its
        # runs reconciled, so that nothing is assigned to the old connection after the
        # decisions (also when a replaced connection appeared meanwhile).
        together = hello.identifier not in self.sessions
        is_enabled, decisions = await self.execution.register(owner, hello, reconcile=together)
        previous = self.sessions.pop(hello.identifier, None)
        if previous is not None:
            await previous.close(m.CLOSE_REPLACED, "replaced by a newer connection")
        if decisions is None or previous is not None:
            decisions = await self.execution.reconcile(hello.identifier, hello.runs)
        session = WorkerSession(
            identifier=hello.identifier,
            owner=owner,
            properties=dict(hello.properties),
            executors=hello.executors,
            websocket=websocket,
            is_enabled=is_enabled,
            assigned={r for r, d in decisions.items() if d.action == "resume"},
        )
        welcome = m.Welcome(heartbeat_interval=self.settings.heartbeat_interval, runs=decisions)
        await session.send(welcome)
        self.sessions[hello.identifier] = session
        log.info("worker %s connected (%d runs resumed)", hello.identifier, len(session.assigned))
        if self.backlog:
            # Pending runs may be waiting for this worker. Otherwise a new run signals
            # "dispatch" itself, and runs becoming due by time are the periodic pass's.
            self.services.events.publish("dispatch")
        # Aborts requested while the worker was away: sent now, to this worker only (a
        # global control pass per connection would cost O(workers) each, O(n²) in a storm).
        # Only a run it resumed can be one: a worker holding none needs no query.
        if session.assigned:
            for _worker, run in await self.execution.runs_to_abort([hello.identifier]):
                if await session.send(m.Abort(run=run)):
                    session.aborts_sent.add(run)
        return session

    async def _serve(self, session: WorkerSession) -> None:
        """Read the worker's frames until it goes, in a task of their own (each frame then
        resumes a short stack, not the whole ASGI application's); reports go to an applier
        task, so that the next frame is read and decoded while the previous report commits."""
        reports: asyncio.Queue[m.Report] = asyncio.Queue(REPORT_QUEUE)
        applier = asyncio.create_task(self._apply_reports(session, reports))
        reader = asyncio.create_task(self._read(session, reports))
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

    async def _read(self, session: WorkerSession, reports: asyncio.Queue[m.Report]) -> None:
        loop = asyncio.get_running_loop()
        websocket = session.websocket
        # The server's own receive: Starlette's checks add nothing here (and a Starlette
        # without the attribute still works, by the public one).
        receive = getattr(websocket, "_receive", websocket.receive)
        # Heartbeats are then taken by the server's protocol, and only leave their time there.
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
                    if isinstance(message, m.Heartbeat):
                        continue
                    if isinstance(message, m.Report):
                        if reports.full():
                            # Waiting for the database is not the worker's silence.
                            session.last_seen = float("inf")
                            await reports.put(message)
                            session.last_seen = loop.time()
                        else:
                            reports.put_nowait(message)
                    elif isinstance(message, m.Capacity):
                        session.accepting = message.accepting
                        log.warning(
                            "worker %s %s new runs%s",
                            session.identifier,
                            "takes" if message.accepting else "takes no",
                            f": {message.reason}" if message.reason else "",
                        )
                        if message.accepting:
                            self.services.events.publish("dispatch")
                    elif isinstance(message, m.Hello):
                        raise ProtocolError("hello was already received")
            finally:
                if watchdog is not None:
                    watchdog.cancel()

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
        result = await self.execution.report(session.identifier, report)
        ack = m.Ack(run=report.run, sequence=result.acknowledged)
        if result.discard_reason is not None:
            await session.send(ack)
            session.assigned.discard(report.run)
            await session.send(m.Discard(run=report.run, reason=result.discard_reason))
        elif result.finished:
            # The run's last acknowledgement only lets the worker drop its journal: it waits
            # (ACK_RIDE_SECONDS at most) to go out with the freed executor's next assignment,
            # one write for both.
            await session.send_soon(ack, ACK_RIDE_SECONDS)
            session.assigned.discard(report.run)
            session.aborts_sent.discard(report.run)
            self.services.events.publish("dispatch")
            if session.draining and not session.assigned:
                await session.close(m.CLOSE_DISCONNECT_REQUESTED, "disconnect requested")
        else:
            await session.send(ack)  # the worker's send window waits for it

    # Dispatch.

    async def _dispatch_loop(self) -> None:
        await self.services.events.wait("dispatch", LOOP_INTERVAL)
        while await self.dispatch_once():
            pass

    async def dispatch_once(self) -> bool:
        """Assign what can be assigned now; True if a full batch went out (look again)."""
        DISPATCH_PASSES.inc()
        free = {w: s.free for w, s in self.sessions.items() if s.free > 0}
        if not free:
            self.backlog = True  # not looked at: whoever frees an executor signals
            return False
        # Two candidates per free executor are usually enough (a finished run frees one):
        # reading DISPATCH_BATCH every time costs a run's worth of work per run, and each row
        # read is converted (16 a pass for two free executors was 5% of the server's CPU in
        # W2). When they are not enough (some could not be matched and executors are still
        # free), the full batch is read, as before.
        batch = min(DISPATCH_BATCH, max(4, 2 * sum(free.values())))

        def match(candidates: list[Candidate]) -> tuple[dict[str, str], bool]:
            left = dict(free)
            assignments = self._match(candidates, left)
            return assignments, any(n > 0 for n in left.values())

        plain = _plain_order(free, batch) if self.execution.plain_pass_next else []
        dispatched = await self.execution.dispatch(batch, match, plain)
        # Read with the claim: a run made pending from now on signals "dispatch" itself. Some
        # stay pending when not every candidate was matched (or a worker was disabled).
        self.backlog = dispatched.full or len(dispatched.won) < len(dispatched.candidates)
        by_worker: dict[str, list[Run]] = {}
        for run in dispatched.won:
            by_worker.setdefault(dispatched.assignments[run.identifier], []).append(run)
        for worker, runs in by_worker.items():
            await self._send_assignments(worker, runs)
        return dispatched.more

    def _match(self, candidates: list[Candidate], free: dict[str, int]) -> dict[str, str]:
        """Run -> worker for the candidates some free worker can take, the freest first."""
        assignments: dict[str, str] = {}
        for candidate in candidates:
            able = [
                w
                for w, n in free.items()
                if n > 0 and self.sessions[w].matches(candidate.properties)
            ]
            if not able:
                continue
            chosen = max(able, key=lambda w: free[w])
            assignments[candidate.identifier] = chosen
            free[chosen] -= 1
        return assignments

    async def _send_assignments(self, worker: str, runs: list[Run]) -> None:
        """Send a pass's assignments to one worker in one write (each write wakes the worker);
        put the runs back if the connection is gone (nothing of them ran)."""
        session = self.sessions.get(worker)
        if session is not None:
            session.assigned.update(run.identifier for run in runs)
            messages = [self._assignment(run) for run in runs]
            for message in messages[:-1]:
                await session.send_soon(message, ACK_RIDE_SECONDS)  # goes with the last
            if await session.send(messages[-1]):
                for run in runs:
                    log.info("run %s assigned to worker %s", run.identifier, worker)
                return
            session.assigned.difference_update(run.identifier for run in runs)
        for run in runs:
            await self.execution.release(run.identifier)

    def _assignment(self, run: Run) -> m.Assign:
        return m.Assign(
            run=run.identifier,
            project=run.project,
            job=run.job,
            parameters=run.parameters,
            workspace=run.workspace,
            steps=[
                m.AssignedStep(name=s.name, command=s.command, timeout=s.timeout) for s in run.steps
            ],
            abort_grace=self.settings.abort_grace,
            url=self.settings.public_url,
            timeout=run.timeout,
            secrets=[
                run.parameters[k] for k in run.secret_parameters or () if run.parameters.get(k)
            ],
        )

    # Control: aborts, enable and disable, disconnects.

    async def _control_loop(self) -> None:
        # Requests (abort, disable, disconnect, a revoked token) signal "control" at once,
        # through LISTEN/NOTIFY from other processes; the poll is only the safety net.
        await self.services.events.wait("control", CONTROL_POLL)
        await self.control_once()

    async def control_once(self) -> None:
        await self._check_credentials()
        flags = await self.execution.worker_flags(self.sessions)
        for worker, (is_enabled, should_disconnect) in flags.items():
            session = self.sessions.get(worker)
            if session is None:
                continue
            if is_enabled and not session.is_enabled:
                self.services.events.publish("dispatch")
            session.is_enabled = is_enabled
            if should_disconnect and not session.draining:
                session.draining = True
                await session.send(m.Drain())
                if not session.assigned:
                    await session.close(m.CLOSE_DISCONNECT_REQUESTED, "disconnect requested")
        held = {run: s for s in self.sessions.values() for run in s.assigned}
        for run in await self.execution.ended_among(held):
            session = held[run]
            session.assigned.discard(run)
            await session.send(m.Discard(run=run, reason="the run was ended on the master"))
        for worker, run in await self.execution.runs_to_abort(self.sessions):
            session = self.sessions.get(worker)
            if session is not None and run not in session.aborts_sent:
                if await session.send(m.Abort(run=run)):
                    session.aborts_sent.add(run)
                    log.info("run %s: abort sent to worker %s", run, worker)

    # Schedules.

    async def _schedule_loop(self) -> None:
        # Asleep until the next due time: a schedule saved meanwhile signals "schedules" (from
        # other processes too, through the bridge); the poll is the safety net. A queued due
        # time waits for a run to end, which no signal announces: looked at twice a second.
        await self.services.scheduler.tick()
        wakeup, queued = await self.services.scheduler.next_wakeup()
        delay = SCHEDULE_QUEUED_INTERVAL if queued else SCHEDULE_POLL
        if wakeup is not None:
            until = (wakeup - self.services.clock.now()).total_seconds()
            delay = max(0.05, min(delay, until))
        await self.services.events.wait(SCHEDULES, delay)

    async def _check_credentials(self) -> None:
        """Close the connections whose token was revoked or expired, or whose user was
        disabled or lost the worker role, since they connected."""
        # Only the sessions present before the query are judged by its answer: a worker that
        # registered while it ran was checked at its handshake, and its token is not in `tokens`.
        checked = [s for s in self.sessions.values() if s.token]
        tokens = {s.token for s in checked if s.token}
        valid = await still_allowed(
            self.services.db, tokens, Role.WORKER, self.services.clock.now()
        )
        for session in checked:
            if session.token not in valid:
                log.warning("worker %s: its credentials are no longer valid", session.identifier)
                await session.close(m.CLOSE_UNAUTHORIZED, "credentials revoked or expired")

    # Maintenance: liveness, expiry, leases.

    async def _maintenance_loop(self) -> None:
        # Once a heartbeat interval: vouching writes one row per connected worker (a worker
        # counts as away after three intervals), and leases and pending expiry are minutes
        # long by default, so a pass per interval keeps them to within one.
        await self.execution.vouch(self.sessions)
        await self.execution.expire_pending(self.settings.pending_expiry)
        await self.execution.expire_leases(
            self.settings.lease, self.settings.heartbeat_interval, self.sessions
        )
        await asyncio.sleep(self.settings.heartbeat_interval)

    async def _retention_loop(self) -> None:
        await self.retention.sweep()
        await self.services.users.throttle.purge()
        await asyncio.sleep(self.settings.retention_interval)


_STOP = m.Report.model_construct(run="", events=[])


def _plain_order(free: dict[str, int], limit: int) -> list[str]:
    """The workers `Master._match` gives runs that every worker can take to, in order (the
    freest first, the earlier of equals), one per free executor, `limit` at most."""
    heap = [(-count, position, worker) for position, (worker, count) in enumerate(free.items())]
    heapq.heapify(heap)
    order: list[str] = []
    while heap and len(order) < limit:
        count, position, worker = heapq.heappop(heap)
        order.append(worker)
        if count < -1:
            heapq.heappush(heap, (count + 1, position, worker))
    return order


def _output_size(report: m.Report) -> int:
    return sum(len(e.data) for e in report.events if isinstance(e, m.StepOutput))


def _same_origin(origin: str, host: str) -> bool:
    return origin.split("://", 1)[-1].rstrip("/") == host


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason[:120])
