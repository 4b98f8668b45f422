"""The dispatcher: gives pending runs to the free executors of the workers connected here.

It wakes on a "dispatch" signal (a run triggered or ended, a worker connected or re-enabled)
or every LOOP_INTERVAL, and runs passes (services/dispatch.py) while a pass says more may be
waiting. A pass's assignments to one worker go out in one write.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from orchestra import metrics
from orchestra.domain.dispatch import DISPATCH_BATCH, Candidate, assign, plain_order
from orchestra.domain.models import Run
from orchestra.master.session import RIDE_SECONDS, Sessions
from orchestra.protocol import messages as m
from orchestra.services.dispatch import DispatchService
from orchestra.services.events import Events
from orchestra.services.run_inputs import RunInputs
from orchestra.services.run_secrets import Delivery, RunSecrets
from orchestra.settings import Settings

log = logging.getLogger(__name__)
LOOP_INTERVAL = 1.0
DISPATCH_PASSES = Counter(
    "orchestra_dispatch_passes", "Dispatch passes: looks at the free executors and pending runs"
)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        events: Events,
        sessions: Sessions,
        dispatch: DispatchService,
        run_secrets: RunSecrets,
    ) -> None:
        self.settings = settings
        self.events = events
        self.sessions = sessions
        self.dispatch = dispatch
        self.run_secrets = run_secrets
        self.run_inputs = RunInputs(dispatch.db)  # pipeline nodes' needs' artifacts
        # Whether the last pass may have left dispatchable runs unassigned (True until a pass
        # found none). A new worker only wakes the dispatcher when it may: with an empty
        # queue, a storm of registrations would otherwise cost a pass over every session each.
        self.backlog = True

    def has_backlog(self) -> bool:
        return self.backlog

    async def loop(self) -> None:
        await self.events.wait("dispatch", LOOP_INTERVAL)
        while await self.dispatch_once():
            pass

    async def dispatch_once(self) -> bool:
        """Assign what can be assigned now; True if a full batch went out (look again)."""
        DISPATCH_PASSES.inc()
        started = time.perf_counter()
        try:
            return await self._dispatch_once()
        finally:
            metrics.DISPATCH_SECONDS.observe(time.perf_counter() - started)

    async def _dispatch_once(self) -> bool:
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
            assignments = assign(candidates, left, self._can_take)
            return assignments, any(n > 0 for n in left.values())

        plain = plain_order(free, batch) if self.dispatch.plain_pass_next else []
        dispatched = await self.dispatch.dispatch(batch, match, plain)
        # Read with the claim: a run made pending from now on signals "dispatch" itself. Some
        # stay pending when not every candidate was matched (or a worker was disabled).
        self.backlog = dispatched.full or len(dispatched.won) < len(dispatched.candidates)
        by_worker: dict[str, list[Run]] = {}
        now = datetime.now(UTC)
        for run in dispatched.won:
            metrics.run_started(run.project, run.creation_date, now)
            by_worker.setdefault(dispatched.assignments[run.identifier], []).append(run)
        for worker, runs in by_worker.items():
            await self._send_assignments(worker, runs)
        return dispatched.more

    def _can_take(self, worker: str, properties: dict[str, object]) -> bool:
        return self.sessions[worker].matches(properties)

    async def _send_assignments(self, worker: str, claimed: list[Run]) -> None:
        """Send a pass's assignments to one worker in one write (each write wakes the worker);
        put the runs back if the connection is gone (nothing of them ran). A run that names a
        secret its project does not have is not sent: it ends `exception`."""
        runs: list[Run] = []
        messages: list[m.Assign] = []
        inputs = await self.run_inputs.of(claimed)
        for run in claimed:
            delivery = await self.run_secrets.delivery(run)
            if delivery.refused is not None:
                self.run_secrets.forget(run.identifier)
                await self.dispatch.give_up(run.identifier, delivery.refused)
                continue
            runs.append(run)
            messages.append(self._assignment(run, delivery, inputs.get(run.identifier)))
        if not runs:
            return
        session = self.sessions.get(worker)
        if session is not None:
            session.assigned.update(run.identifier for run in runs)
            for message in messages[:-1]:
                await session.send_soon(message, RIDE_SECONDS)  # goes with the last
            if await session.send(messages[-1]):
                for run in runs:
                    log.info("run %s assigned to worker %s", run.identifier, worker)
                return
            session.assigned.difference_update(run.identifier for run in runs)
        for run in runs:
            self.run_secrets.forget(run.identifier)
            await self.dispatch.release(run.identifier)

    def _assignment(
        self, run: Run, delivery: Delivery, inputs: list[dict[str, Any]] | None = None
    ) -> m.Assign:
        return m.Assign(
            run=run.identifier,
            project=run.project,
            job=run.job,
            parameters=delivery.parameters,
            workspace=run.workspace,
            steps=[
                m.AssignedStep(name=s.name, command=s.command, timeout=s.timeout) for s in run.steps
            ],
            abort_grace=self.settings.abort_grace,
            url=self.settings.public_url,
            timeout=run.timeout,
            secrets=list(delivery.masks),
            sandbox=None if run.sandbox is None else m.AssignedSandbox(**run.sandbox),
            limits=None if run.limits is None else m.AssignedLimits(**run.limits),
            environment=run.environment or None,
            secret_values=delivery.secret_values,
            artifacts=[m.AssignedArtifact(**a) for a in run.artifact_rules]
            if run.artifact_rules
            else None,
            inputs=[m.AssignedInput(**i) for i in inputs] if inputs else None,
        )
