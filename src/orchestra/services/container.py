"""The services of one process, built once from the settings (the composition root's helper)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestra.clock import Clock, SystemClock
from orchestra.services.apply import ApplyService
from orchestra.services.artifact_backends import store_of
from orchestra.services.artifacts import ArtifactService
from orchestra.services.audit import AuditService
from orchestra.services.events import Events
from orchestra.services.keyring import Keyring, load_keyring
from orchestra.services.members import MemberService
from orchestra.services.notifications import NotificationService
from orchestra.services.pipeline_runs import PipelineRunService
from orchestra.services.pipelines import PipelineService
from orchestra.services.projects import ProjectService
from orchestra.services.runs import RunService
from orchestra.services.scheduler import Scheduler
from orchestra.services.secrets import SecretService
from orchestra.services.sso import SsoService
from orchestra.services.users import UserService
from orchestra.services.webhooks import WebhookService
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
    keyring: Keyring
    secrets: SecretService
    members: MemberService
    pipelines: PipelineService
    pipeline_runs: PipelineRunService
    notifications: NotificationService
    artifacts: ArtifactService
    webhooks: WebhookService
    sso: SsoService | None  # single sign-on, when configured

    @classmethod
    def build(
        cls, settings: Settings, clock: Clock | None = None, keyring: Keyring | None = None
    ) -> Services:
        clock = clock or SystemClock()
        keyring = keyring or load_keyring(settings)
        db = Database(settings.resolved_database_url)
        events = Events()
        runs = RunService(db, clock, events, keyring, settings.pending_expiry)
        users = UserService(db, clock, events=events, local_login=settings.local_login)
        pipeline_runs = PipelineRunService(db, clock, events, runs, keyring)
        sso = None
        if settings.oidc is not None:
            sso = SsoService(db, clock, settings.oidc, keyring, users, settings.public_url)
        return cls(
            settings=settings,
            db=db,
            clock=clock,
            events=events,
            users=users,
            projects=ProjectService(db, clock, events, keyring),
            runs=runs,
            workers=WorkerService(db, events),
            apply=ApplyService(db, clock, events, keyring, settings.notify),
            scheduler=Scheduler(db, clock, events, runs),
            audit=AuditService(db, clock),
            keyring=keyring,
            secrets=SecretService(db, clock, keyring),
            members=MemberService(db, users.access_changed),
            pipelines=PipelineService(db, clock, events, keyring),
            pipeline_runs=pipeline_runs,
            notifications=NotificationService(db, clock, keyring, settings.notify),
            artifacts=ArtifactService(
                db,
                clock,
                store_of(settings),
                settings.artifact_max_file_bytes,
                settings.artifact_max_run_bytes,
            ),
            webhooks=WebhookService(db, clock, events, keyring, runs, pipeline_runs),
            sso=sso,
        )

    async def close(self) -> None:
        await self.artifacts.store.close()
        await self.db.dispose()
