"""Webhooks in: the deliveries that start runs (docs/events.md, "Webhooks in").

A delivery is checked by the HTTP layer (web/api/webhooks.py: its target's webhook, its
signature, its filters), then started here. Its run (or pipeline run), the claim of its
delivery identifier (storage/webhook_deliveries.py) and its line in the audit log (actor
"webhook") are written in one transaction: a delivery seen before, by this server or another,
starts nothing and is answered with the run it started first. Deliveries that arrive together
share that transaction (services/group_commit.py), as triggers do; two with the same key never
share one.

A job's delivery behaves as its trigger: a run of a disabled job, or of a disabled project's
job, is created and stays pending; a disabled pipeline refuses it (409).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain.models import Row
from orchestra.errors import Conflict, InvalidInput, NotFound, OrchestraError
from orchestra.services.audit import MAX_PATH
from orchestra.services.events import Events
from orchestra.services.group_commit import GroupCommit, Waiting
from orchestra.services.keyring import Keyring, KeyringError
from orchestra.services.pipeline_runs import PipelineRunService, topic
from orchestra.services.runs import RunService
from orchestra.services.webhook_secrets import open_secret, webhook_context
from orchestra.services.webhook_signatures import MAX_DELIVERY
from orchestra.storage import direct, records
from orchestra.storage import runs as run_storage
from orchestra.storage import webhook_deliveries as deliveries
from orchestra.storage.engine import Database
from orchestra.storage.schema import audit_event
from orchestra.storage.schema import job as job_table
from orchestra.storage.schema import pipeline as pipeline_table

log = logging.getLogger(__name__)

KINDS = {"job": job_table, "pipeline": pipeline_table}
REMEMBERED = timedelta(days=1)  # a delivery's identifier is remembered at least this long
PRUNE_EVERY = 600.0  # seconds between two prunes by one server
GROUP_MAX = 64
TARGET_SECONDS = 10.0
_INSERT_AUDIT = sa.insert(audit_event)
TARGETS_MAX = 10_000
ACTOR = "webhook"


@dataclass(frozen=True)
class Target:
    """A job's or a pipeline's webhook, its secret in clear."""

    project: str
    kind: str
    identifier: str
    secret: str
    signature: str
    parameters: dict[str, str]
    filter: dict[str, str]
    stored: dict[str, Any]  # the webhook as stored: checked again where its run is created
    cached: bool = False


@dataclass(frozen=True)
class Delivery:
    """A delivery whose signature and filters held: what to start, and what to record."""

    project: str
    kind: str
    target: str
    delivery: str | None
    event: str | None
    parameters: dict[str, str]
    route: str
    path: str
    address: str | None = None
    webhook: dict[str, Any] | None = None  # the stored webhook its signature was checked with

    @property
    def source(self) -> dict[str, Any]:
        return {"type": "webhook", "delivery": self.delivery, "event": self.event}


@dataclass(frozen=True)
class Started:
    """The run (or pipeline run) a delivery started, and whether it started it now (False: a
    delivery seen before, answered with the run it started then)."""

    identifier: str
    created: bool


@dataclass
class _Prepared:
    waiting: Waiting[Delivery, Started]
    run: tuple[dict[str, Any], list[dict[str, Any]]] | None = None  # a job's new run
    claim: dict[str, Any] | None = None
    started: Started | None = None
    pipeline_runs: list[str] = field(default_factory=list)


class WebhookChanged(Conflict):
    """The webhook changed while the delivery was being checked; send it again."""


def check_delivery_id(identifier: str | None) -> str | None:
    """A sender's delivery identifier, as stored: printable ASCII, at most MAX_DELIVERY."""
    if identifier is None:
        return None
    if len(identifier) > MAX_DELIVERY or not identifier.isascii() or not identifier.isprintable():
        raise InvalidInput(
            f"the delivery's identifier must be printable ASCII of at most {MAX_DELIVERY} "
            "characters"
        )
    return identifier


class WebhookService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        keyring: Keyring,
        runs: RunService,
        pipeline_runs: PipelineRunService,
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.keyring = keyring
        self.runs = runs
        self.pipeline_runs = pipeline_runs
        self._last_prune = 0.0
        # Targets read lately, {(project, kind, identifier): (Target, when)}: a delivery is
        # checked against one, and its transaction checks that the webhook is still that one.
        self._targets: dict[tuple[str, str, str], tuple[Target, float]] = {}
        self._groups: GroupCommit[Delivery, Started] = GroupCommit(
            self._commit, group_max=GROUP_MAX, what="webhook deliveries", key=_group_key
        )

    async def target(
        self, project: str, kind: str, identifier: str, *, fresh: bool = False
    ) -> Target:
        """The webhook of `project`'s job or pipeline; NotFound (the same for an unknown
        project, an unknown job or pipeline, and one without a webhook). Unless `fresh`, one
        read less than TARGET_SECONDS ago may serve (`cached`): `start` refuses a delivery
        checked against a webhook changed since (WebhookChanged), and a signature refused by
        a cached one is checked again against a fresh one (web/api/webhooks.py)."""
        key = (project, kind, identifier)
        known = self._targets.get(key)
        if not fresh and known is not None and time.monotonic() - known[1] < TARGET_SECONDS:
            return known[0]
        target = await self._read_target(project, kind, identifier)
        if len(self._targets) >= TARGETS_MAX:
            self._targets.clear()
        self._targets[key] = (replace(target, cached=True), time.monotonic())
        return target

    async def _read_target(self, project: str, kind: str, identifier: str) -> Target:
        self._targets.pop((project, kind, identifier), None)
        table = KINDS[kind]
        query = sa.select(table.c.webhook).where(
            table.c.project == project, table.c.identifier == identifier
        )
        # One statement, no snapshot needed: on PostgreSQL a kept autocommit connection (no
        # BEGIN and ROLLBACK around it), the cheapest read there is.
        async with self.db.autocommit() as conn:
            webhook = await conn.scalar(query)
        if not isinstance(webhook, Mapping):
            raise NotFound(f"no {kind} {identifier!r} with a webhook in project {project!r}")
        context = webhook_context(project, kind, identifier)
        try:
            secret = open_secret(self.keyring, webhook, context)
        except KeyringError as error:  # the instance's key is missing: the operator's to fix
            log.error("webhook of %s %s/%s: %s", kind, project, identifier, error)
            raise NotFound(
                f"no {kind} {identifier!r} with a webhook in project {project!r}"
            ) from None
        return Target(
            project,
            kind,
            identifier,
            secret,
            str(webhook.get("signature")),
            dict(webhook.get("parameters") or {}),
            dict(webhook.get("filter") or {}),
            dict(webhook),
        )

    async def start(self, delivery: Delivery) -> Started:
        """Start the delivery's run, or name the one it started before."""
        started = await self._groups.submit(delivery)
        if time.monotonic() - self._last_prune > PRUNE_EVERY:
            self._last_prune = time.monotonic()
            await self.prune()
        return started

    async def prune(self) -> int:
        """Forget the deliveries older than REMEMBERED; how many."""
        async with self.db.transaction() as conn:
            return await deliveries.prune(conn, self.clock.now() - REMEMBERED)

    async def _commit(self, group: list[Waiting[Delivery, Started]]) -> None:
        now = self.clock.now()
        prepared: list[_Prepared] = []
        async with self.db.transaction() as conn:
            jobs: dict[tuple[str, str], Row | None] = {}
            warnings: dict[str, str | None] = {}
            for waiting in group:
                item = _Prepared(waiting)
                d = waiting.item
                if d.kind == "job":
                    key = (d.project, d.target)
                    if key not in jobs:  # read once for the group (pending_run reads it there)
                        jobs[key] = await records.fetch_one(
                            conn, job_table, {"project": d.project, "identifier": d.target}
                        )
                    row = jobs[key]
                    if row is not None and row["webhook"] != d.webhook:
                        waiting.fail(WebhookChanged())  # checked with another: check it again
                        continue
                    try:  # reads only: a refusal writes nothing
                        item.run = await self.runs.pending_run(
                            conn,
                            d.project,
                            d.target,
                            d.parameters,
                            d.source,
                            jobs=jobs,
                            warnings=warnings,
                        )
                    except OrchestraError as refused:
                        waiting.fail(refused)
                        continue
                if d.delivery is not None:
                    run = item.run[0]["identifier"] if item.run else None
                    item.claim = {
                        "project": d.project,
                        "kind": d.kind,
                        "target": d.target,
                        "delivery": d.delivery,
                        "run": run,
                        "creation_date": now,
                    }
                prepared.append(item)
            await self._claim(conn, prepared)
            await self._create(conn, prepared)
            await self._audit(conn, [p for p in prepared if p.started and p.started.created])
        for item in prepared:
            if item.started is not None:
                item.waiting.answer_with(item.started)
        if any(p.run and p.started and p.started.created for p in prepared):
            self.events.publish("dispatch")
        for item in prepared:
            for identifier in item.pipeline_runs:
                self.events.publish("dispatch")
                self.events.publish(topic(identifier))

    async def _claim(self, conn: AsyncConnection, prepared: list[_Prepared]) -> None:
        """Claim the deliveries' identifiers; those seen before get the run they started."""
        claims = [p.claim for p in prepared if p.claim is not None]
        won = await deliveries.claim(conn, claims)
        lost = [p for p in prepared if p.claim and deliveries.key_of(p.claim) not in won]
        firsts = await deliveries.runs_of(conn, [deliveries.key_of(p.claim or {}) for p in lost])
        for item in lost:
            first = firsts.get(deliveries.key_of(item.claim or {}))
            item.run = None
            item.started = Started(first or "", created=False)

    async def _create(self, conn: AsyncConnection, prepared: list[_Prepared]) -> None:
        new_runs = [p for p in prepared if p.started is None and p.run is not None]
        await run_storage.insert_runs(conn, [p.run for p in new_runs if p.run is not None])
        for item in new_runs:
            assert item.run is not None
            item.started = Started(item.run[0]["identifier"], created=True)
        for item in prepared:
            d = item.waiting.item
            if item.started is not None or d.kind != "pipeline":
                continue
            # A refusal here (a disabled pipeline, parameters that do not fit, a webhook
            # changed) fails the group's transaction: group_commit tries each delivery alone.
            if await _stored_webhook(conn, d) != d.webhook:
                raise WebhookChanged()
            identifier, _ = await self.pipeline_runs.trigger_in(
                conn, d.project, d.target, d.parameters, d.source
            )
            if item.claim is not None:
                await deliveries.set_run(conn, deliveries.key_of(item.claim), identifier)
            item.started = Started(identifier, created=True)
            item.pipeline_runs.append(identifier)

    async def _audit(self, conn: AsyncConnection, created: list[_Prepared]) -> None:
        if not created:
            return
        now = self.clock.now()
        rows = [
            {
                "date": now,
                "actor": ACTOR,
                "method": "POST",
                "route": p.waiting.item.route[:MAX_PATH],
                "path": p.waiting.item.path[:MAX_PATH],
                "status": 201,
                "address": None if p.waiting.item.address is None else p.waiting.item.address[:100],
            }
            for p in created
        ]
        await direct.execute(conn, _INSERT_AUDIT, rows)


def _group_key(delivery: Delivery) -> Hashable:
    """Two deliveries with the same identifier for the same target never share a group (the
    later one finds the first's claim); one without an identifier has a key of its own."""
    if delivery.delivery is None:
        return object()
    return (delivery.project, delivery.kind, delivery.target, delivery.delivery)


async def _stored_webhook(conn: AsyncConnection, delivery: Delivery) -> object:
    table = KINDS[delivery.kind]
    return await conn.scalar(
        sa.select(table.c.webhook).where(
            table.c.project == delivery.project, table.c.identifier == delivery.target
        )
    )
