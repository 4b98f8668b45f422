"""The database schema: SQLAlchemy Core tables, the one source of schema truth.

Names follow the seed. Columns beyond the seed carry what the master, the scheduler and the
website need (leases, log sizes, attempt chains); each is documented where it is used. The
tables of events are in storage/schema_events.py, re-exported here.
"""

from __future__ import annotations

import sqlalchemy as sa

from orchestra.storage.column_types import UTCDateTime
from orchestra.storage.schema_base import IDENTIFIER, JSON, UUID, metadata
from orchestra.storage.schema_base import dates as _dates
from orchestra.storage.schema_events import (
    event_log,
    notification,
    notification_delivery,
    notification_relay,
    webhook_delivery,
)

__all__ = [
    "IDENTIFIER",
    "JSON",
    "UUID",
    "event_log",
    "metadata",
    "notification",
    "notification_delivery",
    "notification_relay",
    "webhook_delivery",
]


project = sa.Table(
    "project",
    metadata,
    sa.Column("identifier", IDENTIFIER, primary_key=True),
    sa.Column("display_name", sa.Text(), nullable=False),
    sa.Column("services", JSON, nullable=False),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
    # At most this many runs of the project's jobs at once (None: no limit).
    sa.Column("concurrency", sa.Integer(), nullable=True),
    *_dates(),
)

job = sa.Table(
    "job",
    metadata,
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("identifier", IDENTIFIER, primary_key=True),
    sa.Column("display_name", sa.Text(), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("workspace", sa.Text(), nullable=False),
    sa.Column("steps", JSON, nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("properties", JSON, nullable=False),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
    # Seconds a worker may stay away before its runs of this job end `exception`.
    sa.Column("lease", sa.Float(), nullable=True),
    # Job controls: whole-run timeout (seconds), retry policy, concurrency cap, priority, and
    # seconds a run may stay pending before it is cancelled.
    sa.Column("timeout", sa.Float(), nullable=True),
    sa.Column("retry", JSON, nullable=True),
    sa.Column("concurrency", sa.Integer(), nullable=True),
    sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("expiry", sa.Float(), nullable=True),
    # How long the job's final runs are kept ({"days": D, "runs": N}; services/retention.py).
    sa.Column("retention", JSON, nullable=True),
    # Isolation (docs/isolation.md): {"network": bool} to run each step in a sandbox, and the
    # limits of each step's processes ({"memory_mb", "processes", "open_files", "cpu_seconds"}).
    sa.Column("sandbox", JSON, nullable=True),
    sa.Column("limits", JSON, nullable=True),
    # Variables of its steps' processes, {NAME: format string}; {secrets[NAME]} allowed (0009).
    sa.Column("environment", JSON, nullable=True),
    # The files to keep after the steps, [{"path": GLOB, "when", "report"?}] (0012).
    sa.Column("artifacts", JSON, nullable=True),
    # Its webhook, {secret (encrypted), signature, parameters, filter} or None (0013).
    sa.Column("webhook", JSON, nullable=True),
    *_dates(),
)

run = sa.Table(
    "run",
    metadata,
    sa.Column("identifier", UUID, primary_key=True),
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("job", IDENTIFIER, nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("source", JSON, nullable=False),
    sa.Column("worker", IDENTIFIER, nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("workspace", sa.Text(), nullable=False),
    sa.Column("start_date", UTCDateTime(), nullable=True),
    sa.Column("completion_date", UTCDateTime(), nullable=True),
    sa.Column("should_cancel", sa.Boolean(), nullable=False),
    sa.Column("should_abort", sa.Boolean(), nullable=False),
    # Why the run ended as it did when its own commands did not decide it (lost worker, expiry).
    sa.Column("reason", sa.Text(), nullable=True),
    # When the master handed the run to its worker, and which master did.
    sa.Column("assignment_date", UTCDateTime(), nullable=True),
    sa.Column("master", sa.String(200), nullable=True),
    sa.Column("lease", sa.Float(), nullable=True),
    # What a worker reported for this run after the master had given up on it (recorded, not
    # applied: the run keeps the final status it was given).
    sa.Column("late_report", sa.Text(), nullable=True),
    # The last worker event applied (events are numbered per run by the worker), and the
    # number of output bytes stored: together they make every report idempotent.
    sa.Column("event_sequence", sa.Integer(), nullable=False),
    sa.Column("log_size", sa.BigInteger(), nullable=False),
    # Job controls, copied from the job at trigger so that later edits change no existing run.
    sa.Column("timeout", sa.Float(), nullable=True),
    sa.Column("retry", JSON, nullable=True),
    sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("expiry_date", UTCDateTime(), nullable=True),
    # Retries: the attempt number (from 1) and the run this one retries; a retry waits until
    # not_before (its backoff delay).
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("retry_of", UUID, nullable=True, unique=True),
    # The run that retries this one (its next attempt), set in the transaction that ends it.
    sa.Column("retried_by", UUID, nullable=True),
    sa.Column("not_before", UTCDateTime(), nullable=True),
    # The keys of the parameters whose values are secret: never shown, masked in the log.
    sa.Column("secret_parameters", JSON, nullable=True),
    # Set at trigger when no registered worker could ever take the run.
    sa.Column("warning", sa.Text(), nullable=True),
    # Who forced the run to its final status, when an operator did.
    sa.Column("forced_by", IDENTIFIER, nullable=True),
    # The job's sandbox and limits, copied at trigger: a sandboxed run goes only to a worker
    # with the property sandbox=true (domain/matching.py), and the worker gets exactly these.
    sa.Column("sandbox", JSON, nullable=True),
    sa.Column("limits", JSON, nullable=True),
    sa.Column("environment", JSON, nullable=True),
    # What its steps wrote to ORCHESTRA_RESULTS, {KEY: value} (0010).
    sa.Column("results", JSON, nullable=True),
    # The pipeline run and node that started this run, if one did (0010).
    sa.Column("pipeline_run", UUID, nullable=True),
    sa.Column("pipeline_node", IDENTIFIER, nullable=True),
    # The job's artifacts entries, copied at trigger (the worker gets them), and the JUnit
    # counts of its reports, {"passed", "failed", "skipped", "failures": [names]} (0012).
    sa.Column("artifact_rules", JSON, nullable=True),
    sa.Column("tests", JSON, nullable=True),
    *_dates(),
    sa.Index("ix_run_creation", "creation_date", "identifier"),
    sa.Index("ix_run_project_creation", "project", "creation_date", "identifier"),
    sa.Index("ix_run_project_job_creation", "project", "job", "creation_date", "identifier"),
    sa.Index("ix_run_project_status_creation", "project", "status", "creation_date", "identifier"),
    sa.Index("ix_run_project_worker_creation", "project", "worker", "creation_date", "identifier"),
    sa.Index("ix_run_status_creation", "status", "creation_date"),
    sa.Index("ix_run_dispatch", "status", "project", "priority", "creation_date"),
    sa.Index("ix_run_worker_status", "worker", "status"),
    sa.Index("ix_run_pipeline_run", "pipeline_run"),
)

run_step = sa.Table(
    "run_step",
    metadata,
    sa.Column("run", UUID, sa.ForeignKey("run.identifier", ondelete="CASCADE"), primary_key=True),
    sa.Column("index", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("command", JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("start_date", UTCDateTime(), nullable=True),
    sa.Column("completion_date", UTCDateTime(), nullable=True),
    sa.Column("log_size", sa.BigInteger(), nullable=False),
    sa.Column("timeout", sa.Float(), nullable=True),
)

# A run's output, in chunks as the worker sent them. `offset` is the chunk's position in the
# whole run log (steps run one after the other, so the run log is their concatenation).
run_log = sa.Table(
    "run_log",
    metadata,
    sa.Column("run", UUID, sa.ForeignKey("run.identifier", ondelete="CASCADE"), primary_key=True),
    sa.Column("offset", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("step_index", sa.Integer(), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    # When the worker read the chunk from its step: the time of the lines that start in it
    # (0015; null for chunks stored before).
    sa.Column("date", UTCDateTime(), nullable=True),
)

# A run's stored files (docs/artifacts.md): where their bytes are is the artifact store's
# business (services/artifact_store.py), under the run's identifier and the path (0012).
artifact = sa.Table(
    "artifact",
    metadata,
    sa.Column("run", UUID, sa.ForeignKey("run.identifier", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("creation_date", UTCDateTime(), nullable=False),
)

# An artifact's upload in progress: the bytes held so far (`offset`), and for an S3 store its
# multipart upload and parts ([[number, etag], ...]) (0012).
artifact_upload = sa.Table(
    "artifact_upload",
    metadata,
    sa.Column("run", UUID, sa.ForeignKey("run.identifier", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("offset", sa.BigInteger(), nullable=False),
    sa.Column("key", sa.String(100), nullable=False),
    sa.Column("store_upload", sa.Text(), nullable=True),
    sa.Column("parts", JSON, nullable=False),
    sa.Column("junit", JSON, nullable=True),
    *_dates(),
)

schedule = sa.Table(
    "schedule",
    metadata,
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("identifier", IDENTIFIER, primary_key=True),
    sa.Column("display_name", sa.Text(), nullable=False),
    # What it triggers: a job, or a pipeline (0010); exactly one of the two.
    sa.Column("job", IDENTIFIER, nullable=True),
    sa.Column("pipeline", IDENTIFIER, nullable=True),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("expression", sa.Text(), nullable=False),
    sa.Column("time_zone", sa.String(100), nullable=False),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
    sa.Column("last_run", UUID, nullable=True),
    # Policies: what to do when the previous run is still active, and after downtime.
    sa.Column("overlap", sa.String(10), nullable=False, server_default="skip"),
    sa.Column("catchup", sa.String(10), nullable=False, server_default="latest"),
    sa.Column("catchup_window", sa.Float(), nullable=True),
    sa.Column("catchup_max", sa.Integer(), nullable=True),
    # The next due time (UTC), so a tick reads only the schedules that are due.
    sa.Column("next_due_date", UTCDateTime(), nullable=True),
    sa.Column("last_fire_date", UTCDateTime(), nullable=True),
    sa.Column("last_skip_date", UTCDateTime(), nullable=True),
    sa.Column("last_skip_reason", sa.Text(), nullable=True),
    # With overlap `queue`: the one due time waiting for the previous run to end.
    sa.Column("queued_due_date", UTCDateTime(), nullable=True),
    *_dates(),
    sa.Index("ix_schedule_due", "is_enabled", "next_due_date"),
    sa.Index("ix_schedule_queued", "queued_due_date"),
)

# Pipelines: graphs of nodes (a job, or an approval) in a project; `nodes` as the API shows them.
pipeline = sa.Table(
    "pipeline",
    metadata,
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("identifier", IDENTIFIER, primary_key=True),
    sa.Column("display_name", sa.Text(), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("nodes", JSON, nullable=False),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
    # Its webhook, as a job's (0013).
    sa.Column("webhook", JSON, nullable=True),
    *_dates(),
)

# A pipeline's run, with its own copy of the pipeline's nodes (later edits change no run).
# `advance_date`: set when something happened that may let a node start or the run end (a node's
# run ended, a decision, a cancel), cleared by the master that advanced it; a master's sweep picks
# up what one that died left.
pipeline_run = sa.Table(
    "pipeline_run",
    metadata,
    sa.Column("identifier", UUID, primary_key=True),
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("pipeline", IDENTIFIER, nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("secret_parameters", JSON, nullable=True),
    sa.Column("source", JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("nodes", JSON, nullable=False),
    sa.Column("should_cancel", sa.Boolean(), nullable=False),
    sa.Column("advance_date", UTCDateTime(), nullable=True),
    sa.Column("start_date", UTCDateTime(), nullable=True),
    sa.Column("completion_date", UTCDateTime(), nullable=True),
    *_dates(),
    sa.Index("ix_pipeline_run_project_creation", "project", "creation_date", "identifier"),
    sa.Index(
        "ix_pipeline_run_project_pipeline_creation",
        "project",
        "pipeline",
        "creation_date",
        "identifier",
    ),
    sa.Index("ix_pipeline_run_advance", "advance_date"),
    sa.Index("ix_pipeline_run_status", "status"),
)

# The state of each node of a pipeline run: its status, its run (job nodes), its decision
# (approval nodes).
pipeline_node = sa.Table(
    "pipeline_node",
    metadata,
    sa.Column(
        "pipeline_run",
        UUID,
        sa.ForeignKey("pipeline_run.identifier", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("node", IDENTIFIER, primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("run", UUID, nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("decided_by", IDENTIFIER, nullable=True),
    sa.Column("comment", sa.Text(), nullable=True),
    sa.Column("decision_date", UTCDateTime(), nullable=True),
    *_dates(),
    sa.Index("ix_pipeline_node_run", "run"),
)

# One row per due time a schedule handled (fired, or skipped and why): the unique key makes
# "at most once per due time" hold across restarts and masters.
schedule_firing = sa.Table(
    "schedule_firing",
    metadata,
    sa.Column("project", IDENTIFIER, primary_key=True),
    sa.Column("schedule", IDENTIFIER, primary_key=True),
    sa.Column("due_date", UTCDateTime(), primary_key=True),
    sa.Column("run", UUID, nullable=True),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("creation_date", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(
        ["project", "schedule"],
        ["schedule.project", "schedule.identifier"],
        ondelete="CASCADE",
    ),
)

user = sa.Table(
    "user",
    metadata,
    sa.Column("identifier", IDENTIFIER, primary_key=True),
    sa.Column("display_name", sa.Text(), nullable=False),
    sa.Column("roles", JSON, nullable=False),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
    # Group names (null: none): set by administrators, or from the OpenID provider's claim at
    # each single sign-on login; project members may be groups.
    sa.Column("groups", JSON, nullable=True),
    # A user created by single sign-on: the provider's issuer and subject. Null for local users,
    # which a single sign-on login never takes over.
    sa.Column("sso_issuer", sa.String(1000), nullable=True),
    sa.Column("sso_subject", sa.String(255), nullable=True),
    *_dates(),
    sa.Index("ix_user_sso", "sso_issuer", "sso_subject", unique=True),
)

user_authentication = sa.Table(
    "user_authentication",
    metadata,
    sa.Column("identifier", UUID, primary_key=True),
    sa.Column(
        "user", IDENTIFIER, sa.ForeignKey("user.identifier", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("hash_function", sa.String(50), nullable=False),
    sa.Column("hash_function_parameters", JSON, nullable=False),
    sa.Column("hash_function_salt", sa.String(200), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("expiration_date", UTCDateTime(), nullable=True),
    sa.Column("last_used_date", UTCDateTime(), nullable=True),
    # A token's scopes (read, trigger, write, admin) and projects: null for all of its user's.
    sa.Column("scopes", JSON, nullable=True),
    sa.Column("projects", JSON, nullable=True),
    # A login session (website or POST /me/login) rather than a token made on purpose.
    sa.Column("is_session", sa.Boolean(), nullable=False, server_default=sa.false()),
    *_dates(),
    sa.Index("ix_user_authentication_user", "user", "type"),
    sa.Index("ix_user_authentication_secret", "secret"),
)

# Who changed what: one row per change made through the API or the website (services/audit.py).
# No foreign key: the record outlives the users and the things it names.
audit_event = sa.Table(
    "audit_event",
    metadata,
    sa.Column("identifier", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("date", UTCDateTime(), nullable=False),
    sa.Column("actor", IDENTIFIER, nullable=True),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("route", sa.Text(), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("address", sa.String(100), nullable=True),
    sa.Index("ix_audit_event_actor", "actor", "identifier"),
)

# Failed logins inside the throttle's window (services/throttle.py): in the database, so that
# every API server counts them together. `key` is a digest of the user or the client address.
login_failure = sa.Table(
    "login_failure",
    metadata,
    sa.Column("identifier", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("date", UTCDateTime(), nullable=False),
    sa.Index("ix_login_failure_key_date", "key", "date"),
    sa.Index("ix_login_failure_date", "date"),
)

worker = sa.Table(
    "worker",
    metadata,
    sa.Column("identifier", IDENTIFIER, primary_key=True),
    sa.Column(
        "owner", IDENTIFIER, sa.ForeignKey("user.identifier", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("display_name", sa.Text(), nullable=False),
    sa.Column("properties", JSON, nullable=False),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False),
    sa.Column("should_disconnect", sa.Boolean(), nullable=False),
    sa.Column("executors", sa.Integer(), nullable=False),
    # The master holding the connection, and when it last vouched that the worker was there.
    sa.Column("master", sa.String(200), nullable=True),
    sa.Column("last_seen_date", UTCDateTime(), nullable=True),
    # False while a new worker waits for an administrator's approval (when approval is required).
    sa.Column("is_approved", sa.Boolean(), nullable=False, server_default=sa.true()),
    *_dates(),
)

# Project members: users (kind "user") and groups (kind "group") with a role in one project.
project_member = sa.Table(
    "project_member",
    metadata,
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("kind", sa.String(10), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    *_dates(),
    sa.Index("ix_project_member_kind_name", "kind", "name"),
)

# Project secrets: values encrypted with the instance key (services/keyring.py), never in clear.
project_secret = sa.Table(
    "project_secret",
    metadata,
    sa.Column(
        "project",
        IDENTIFIER,
        sa.ForeignKey("project.identifier", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    *_dates(),
)

# Settings of the instance that every server shares, e.g. the check value that tells whether a
# server was given the instance's encryption key.
instance_setting = sa.Table(
    "instance_setting",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("update_date", UTCDateTime(), nullable=False),
)
