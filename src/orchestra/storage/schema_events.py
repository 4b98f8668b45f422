"""The tables of events (issue 23): the change log, notifications and their deliveries, and the
webhook deliveries already seen. Part of the schema (storage/schema.py re-exports them)."""

from __future__ import annotations

import sqlalchemy as sa

from orchestra.storage.column_types import UTCDateTime
from orchestra.storage.schema_base import IDENTIFIER, JSON, UUID, dates, metadata

# The change log (services/change_log.py): one row per change to a run, pipeline run, worker or
# schedule, written in the transaction that made the change. It is the outbox that the live
# event stream (GET /events) and the notifications read after a cursor; `identifier` is that
# cursor. Rows carry no copy of the object: readers show it as it is when they read.
event_log = sa.Table(
    "event_log",
    metadata,
    sa.Column(
        "identifier",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    # run.created, run.updated, pipeline_run.created, pipeline_run.updated, worker.updated,
    # schedule.fired
    sa.Column("type", sa.String(40), nullable=False),
    # None for workers, which belong to no project.
    sa.Column("project", IDENTIFIER, nullable=True),
    # The run's or pipeline run's identifier, the worker's, or the schedule's.
    sa.Column("subject", sa.String(100), nullable=False),
    # The subject's status after the change, where it has one (notifications filter on it).
    sa.Column("status", sa.String(20), nullable=True),
    sa.Column("date", UTCDateTime(), nullable=False),
    sa.Index("ix_event_log_date", "date"),
    # Identifiers never reused on SQLite either, even once pruning has emptied the table: a
    # client's Last-Event-ID and the relay's position stay meaningful.
    sqlite_autoincrement=True,
)

# Notifications (docs/events.md): where a project's run and pipeline events are sent (a URL, or
# an e-mail address), which events, for which jobs and pipelines; `secret` encrypted with the
# instance key (services/keyring.py) (0014).
notification = sa.Table(
    "notification",
    metadata,
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("identifier", IDENTIFIER, primary_key=True),
    sa.Column("events", JSON, nullable=False),
    sa.Column("jobs", JSON, nullable=True),
    sa.Column("pipelines", JSON, nullable=True),
    sa.Column("url", sa.Text(), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("secret", sa.Text(), nullable=True),
    sa.Column("format", sa.String(10), nullable=False),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
    *dates(),
)

# One event to send to one notification, kept until it is delivered or given up (a day):
# `identifier` orders a notification's events, `message` is its stable webhook-id, `event` the
# key that makes an event (a run's end...) give one delivery however often it is seen; a sender
# holds it while it tries (`lease_holder` until `lease_date`) (0014).
notification_delivery = sa.Table(
    "notification_delivery",
    metadata,
    sa.Column(
        "identifier",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("message", sa.String(64), nullable=False, unique=True),
    sa.Column("project", IDENTIFIER, nullable=False),
    sa.Column("notification", IDENTIFIER, nullable=False),
    sa.Column("event", sa.String(250), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_date", UTCDateTime(), nullable=True),
    sa.Column("retry_delay", sa.Float(), nullable=True),
    sa.Column("lease_holder", sa.String(200), nullable=True),
    sa.Column("lease_date", UTCDateTime(), nullable=True),
    sa.Column("last_attempt_date", UTCDateTime(), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("delivery_date", UTCDateTime(), nullable=True),
    *dates(),
    sa.ForeignKeyConstraint(
        ["project", "notification"],
        ["notification.project", "notification.identifier"],
        ondelete="CASCADE",
    ),
    sa.UniqueConstraint("project", "notification", "event"),
    sa.Index("ix_notification_delivery_due", "status", "next_attempt_date"),
    sa.Index("ix_notification_delivery_queue", "project", "notification", "status", "identifier"),
)

# The notifications relay's place in the change log (services/notification_relay.py): every
# event_log row up to `position` is relayed, and so are those of `seen` above it (rows that
# committed before an earlier identifier did, on PostgreSQL); `gap_date`: since when the row
# after `position` is missing (0014).
notification_relay = sa.Table(
    "notification_relay",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("seen", JSON, nullable=False),
    sa.Column("gap_date", UTCDateTime(), nullable=True),
    sa.Column("update_date", UTCDateTime(), nullable=False),
)

# Webhook deliveries that started a run (services/webhooks.py): the unique key makes a delivery
# start one run at most, across API servers; `run` is the run or pipeline run it started. Kept a
# day at least, then pruned (0013). No foreign key: a delivery is remembered whatever happens to
# what it started.
webhook_delivery = sa.Table(
    "webhook_delivery",
    metadata,
    sa.Column("project", IDENTIFIER, primary_key=True),
    sa.Column("kind", sa.String(10), primary_key=True),  # job or pipeline
    sa.Column("target", IDENTIFIER, primary_key=True),
    sa.Column("delivery", sa.String(200), primary_key=True),
    sa.Column("run", UUID, nullable=True),
    sa.Column("creation_date", UTCDateTime(), nullable=False),
    sa.Index("ix_webhook_delivery_creation", "creation_date"),
)
