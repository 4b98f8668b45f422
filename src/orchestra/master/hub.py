"""The master: holds worker connections, assigns pending runs, applies reports, watches leases.

Three loops run beside the connections: dispatch (on a "dispatch" signal or every second),
control (abort requests and disconnects, on a "control" signal or every second) and maintenance
(vouching for connected workers, pending-run expiry, lease expiry). The database is the only
shared state: a master can die at any point and another can carry on from what is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestra.domain.models import Run
from orchestra.domain.permissions import Role, allowed
from orchestra.errors import Forbidden, ProtocolError
from orchestra.master.session import WorkerSession
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.execution import DISPATCH_BATCH, Candidate, ExecutionService
from orchestra.services.users import still_allowed
from orchestra.web.auth import authenticate
from orchestra.web.permissions import API, permission_for

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 10.0
LOOP_INTERVAL = 1.0
SCHEDULE_INTERVAL = 0.5
CONTROL_POLL = 2.0


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
        self.sessions: dict[str, WorkerSession] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_vouch = float("-inf")

    # Life cycle.

    async def start(self) -> None:
        loops = (
            self._dispatch_loop,
            self._control_loop,
            self._maintenance_loop,
            self._schedule_loop,
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
        frame = await asyncio.wait_for(websocket.receive_text(), HELLO_TIMEOUT)
        hello = m.decode_worker_message(frame)
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
        self.services.events.publish("dispatch")
        # Aborts requested while the worker was away: sent now, to this worker only (a
        # global control pass per connection would cost O(workers) each, O(n²) in a storm).
        for _worker, run in await self.execution.runs_to_abort([hello.identifier]):
            if await session.send(m.Abort(run=run)):
                session.aborts_sent.add(run)
        return session

    async def _serve(self, session: WorkerSession) -> None:
        timeout = 3 * self.settings.heartbeat_interval
        while True:
            frame = await asyncio.wait_for(session.websocket.receive_text(), timeout)
            message = m.decode_worker_message(frame)
            if isinstance(message, m.Report):
                await self._report(session, message)
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

    async def _report(self, session: WorkerSession, report: m.Report) -> None:
        result = await self.execution.apply_report(session.identifier, report)
        await session.send(m.Ack(run=report.run, sequence=result.acknowledged))
        if result.discard_reason is not None:
            session.assigned.discard(report.run)
            await session.send(m.Discard(run=report.run, reason=result.discard_reason))
        elif result.finished:
            session.assigned.discard(report.run)
            session.aborts_sent.discard(report.run)
            self.services.events.publish("dispatch")
            if session.draining and not session.assigned:
                await session.close(m.CLOSE_DISCONNECT_REQUESTED, "disconnect requested")

    # Dispatch.

    async def _dispatch_loop(self) -> None:
        await self.services.events.wait("dispatch", LOOP_INTERVAL)
        while await self.dispatch_once():
            pass

    async def dispatch_once(self) -> bool:
        """Assign what can be assigned now; True if a full batch went out (look again)."""
        free = {w: s.free for w, s in self.sessions.items() if s.free > 0}
        if not free:
            return False
        # A few candidates per free executor are usually enough (a finished run frees one):
        # reading DISPATCH_BATCH every time costs a run's worth of work per run. When they
        # are not enough (some could not be matched and executors are still free), the full
        # batch is read, as before.
        batch = min(DISPATCH_BATCH, max(16, 4 * sum(free.values())))
        while True:
            candidates = await self.execution.candidates(batch)
            left = dict(free)
            assignments = self._match(candidates, left)
            full = len(candidates) >= batch
            if batch >= DISPATCH_BATCH or not full or not any(n > 0 for n in left.values()):
                break
            batch = DISPATCH_BATCH
        if not assignments:
            return False
        for run in await self.execution.claim(assignments):
            await self._send_assignment(assignments[run.identifier], run)
        return full and batch >= DISPATCH_BATCH and any(n > 0 for n in left.values())

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

    async def _send_assignment(self, worker: str, run: Run) -> None:
        session = self.sessions.get(worker)
        message = m.Assign(
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
        if session is not None:
            session.assigned.add(run.identifier)
            if await session.send(message):
                log.info("run %s assigned to worker %s", run.identifier, worker)
                return
            session.assigned.discard(run.identifier)
        await self.execution.release(run.identifier)

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
        await self.services.scheduler.tick()
        wakeup = await self.services.scheduler.next_wakeup()
        delay = SCHEDULE_INTERVAL
        if wakeup is not None:
            until = (wakeup - self.services.clock.now()).total_seconds()
            delay = max(0.05, min(SCHEDULE_INTERVAL, until))
        await asyncio.sleep(delay)

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
        # Vouching writes one row per connected worker: once a heartbeat interval is enough
        # (a worker counts as away after three), whatever the pace of the other checks.
        now = asyncio.get_running_loop().time()
        if now - self._last_vouch >= self.settings.heartbeat_interval:
            self._last_vouch = now
            await self.execution.vouch(self.sessions)
        await self.execution.expire_pending(self.settings.pending_expiry)
        await self.execution.expire_leases(
            self.settings.lease, self.settings.heartbeat_interval, self.sessions
        )
        await asyncio.sleep(min(LOOP_INTERVAL, self.settings.heartbeat_interval))


def _same_origin(origin: str, host: str) -> bool:
    return origin.split("://", 1)[-1].rstrip("/") == host


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason[:120])
