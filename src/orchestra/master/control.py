"""The control loop: what operators ask of running runs and connected workers, carried out.

Aborts, a worker disabled, enabled or asked to disconnect, a run ended elsewhere (forced, given
up on), a token revoked or a user disabled: each signals "control" at once (through LISTEN/
NOTIFY from other processes), and the loop also looks every CONTROL_POLL seconds.
"""

from __future__ import annotations

import logging

from orchestra.domain.permissions import Role
from orchestra.master.session import Sessions
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.control_queries import ControlQueries
from orchestra.services.users import still_allowed

log = logging.getLogger(__name__)
CONTROL_POLL = 2.0


class ControlLoop:
    def __init__(self, services: Services, sessions: Sessions, queries: ControlQueries) -> None:
        self.services = services
        self.sessions = sessions
        self.queries = queries

    async def loop(self) -> None:
        await self.services.events.wait("control", CONTROL_POLL)
        await self.control_once()

    async def control_once(self) -> None:
        await self._check_credentials()
        flags = await self.queries.worker_flags(self.sessions)
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
        for run in await self.queries.ended_among(held):
            session = held[run]
            session.assigned.discard(run)
            await session.send(m.Discard(run=run, reason="the run was ended on the master"))
        for worker, run in await self.queries.runs_to_abort(self.sessions):
            session = self.sessions.get(worker)
            if session is not None and run not in session.aborts_sent:
                if await session.send(m.Abort(run=run)):
                    session.aborts_sent.add(run)
                    log.info("run %s: abort sent to worker %s", run, worker)

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
