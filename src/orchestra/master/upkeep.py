"""The master's upkeep: three loops that keep time rather than answer anyone.

- maintenance, once a heartbeat interval: vouch for the workers connected here (their liveness
  lease), cancel pending runs past their expiry, end the runs whose worker was away longer than
  their lease (services/leases.py);
- schedules: fire what is due (services/scheduler.py), asleep until the next due time;
- retention: delete the final runs past their retention, purge old login failures.

Maintenance also prunes the change log (services/change_log.py), once every PRUNE_INTERVAL.
"""

from __future__ import annotations

import asyncio
import time

from orchestra.master.session import Sessions
from orchestra.services import change_log
from orchestra.services.container import Services
from orchestra.services.leases import Leases
from orchestra.services.retention import RetentionService
from orchestra.services.scheduler import SCHEDULES
from orchestra.services.worker_registry import WorkerRegistry

SCHEDULE_QUEUED_INTERVAL = 0.5
SCHEDULE_POLL = 5.0
PRUNE_INTERVAL = 60.0  # seconds between two prunings of the change log


class Upkeep:
    def __init__(
        self,
        services: Services,
        sessions: Sessions,
        registry: WorkerRegistry,
        leases: Leases,
        retention: RetentionService,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.sessions = sessions
        self.registry = registry
        self.leases = leases
        self.retention = retention
        self._pruned = 0.0  # time.monotonic() of the last pruning

    async def maintenance(self) -> None:
        # Once a heartbeat interval: vouching writes one row per connected worker (a worker
        # counts as away after three intervals), and leases and pending expiry are minutes
        # long by default, so a pass per interval keeps them to within one.
        await self.registry.vouch(self.sessions)
        await self.leases.expire_pending(self.settings.pending_expiry)
        await self.leases.expire_leases(
            self.settings.lease, self.settings.heartbeat_interval, self.sessions
        )
        if time.monotonic() - self._pruned >= PRUNE_INTERVAL:
            self._pruned = time.monotonic()
            async with self.services.db.transaction() as conn:
                await change_log.prune(conn, self.services.clock.now())
        await asyncio.sleep(self.settings.heartbeat_interval)

    async def schedules(self) -> None:
        # Asleep until the next due time: a schedule saved meanwhile signals "schedules" (from
        # other processes too, through the bridge); the poll is the safety net. A queued due
        # time waits for a run to end, which no signal announces: looked at twice a second.
        scheduler = self.services.scheduler
        await scheduler.tick()
        wakeup, queued = await scheduler.next_wakeup()
        delay = SCHEDULE_QUEUED_INTERVAL if queued else SCHEDULE_POLL
        if wakeup is not None:
            until = (wakeup - self.services.clock.now()).total_seconds()
            delay = max(0.05, min(delay, until))
        await self.services.events.wait(SCHEDULES, delay)

    async def retention_sweep(self) -> None:
        await self.retention.sweep()
        await self.services.users.throttle.purge()
        await asyncio.sleep(self.settings.retention_interval)
