"""The services of one process, built once from the settings (the composition root's helper)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestra.clock import Clock, SystemClock
from orchestra.services.apply import ApplyService
from orchestra.services.audit import AuditService
from orchestra.services.events import Events
from orchestra.services.projects import ProjectService
from orchestra.services.runs import RunService
from orchestra.services.scheduler import Scheduler
from orchestra.services.users import UserService
from orchestra.services.workers import WorkerService
from orchestra.settings import Settings
from orchestra.storage.engine import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    clock: Clock
    events: Events
    users: UserService
    projects: ProjectService
    runs: RunService
    workers: WorkerService
    apply: ApplyService
    scheduler: Scheduler
    audit: AuditService

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Services:
        clock = clock or SystemClock()
        db = Database(settings.resolved_database_url)
        events = Events()
        runs = RunService(db, clock, events, settings.pending_expiry)
        return cls(
            settings=settings,
            db=db,
            clock=clock,
            events=events,
            users=UserService(db, clock, events=events),
            projects=ProjectService(db, clock, events),
            runs=runs,
            workers=WorkerService(db, events),
            apply=ApplyService(db, clock, events),
            scheduler=Scheduler(db, clock, events, runs),
            audit=AuditService(db, clock),
        )

    async def close(self) -> None:
        await self.db.dispose()
