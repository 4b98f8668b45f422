"""The notifications loops, run by every master: the relay (change log rows into deliveries)
and the sender (deliveries to their targets). The database decides who does what: one relay at
a time holds its row, and each attempt is leased to one sender (services/notification_*.py)."""

from __future__ import annotations

import time

from orchestra.services.container import Services
from orchestra.services.notification_relay import BATCH, NOTIFY, NotificationRelay, RunView
from orchestra.services.notification_sender import NotificationSender

RELAY_POLL = 0.5  # seconds between looks at the change log when it had nothing new
SEND_POLL = 1.0  # seconds between looks for due deliveries without a signal
PRUNE_EVERY = 3600.0


class NotificationLoops:
    def __init__(self, services: Services, holder: str, run_view: RunView | None) -> None:
        self.services = services
        self.relay = NotificationRelay(services.db, services.clock, services.events, run_view)
        self.sender = NotificationSender(
            services.db, services.clock, services.keyring, services.settings.notify, holder
        )
        self._pruned = 0.0

    async def relay_loop(self) -> None:
        """One turn: relay a batch, then wait unless the batch was full."""
        if await self.relay.tick() < BATCH:
            await self.services.clock.sleep(RELAY_POLL)

    async def send_loop(self) -> None:
        """One turn: send what is due, then wait for the relay's signal or the next due time."""
        if await self.sender.tick():
            return
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self._pruned = time.monotonic()
            await self.sender.prune()
        wait = await self.sender.next_due_in(SEND_POLL)
        await self.services.events.wait(NOTIFY, max(0.05, wait))

    async def close(self) -> None:
        await self.sender.close()
