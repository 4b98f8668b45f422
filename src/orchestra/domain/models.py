"""The seed's entities as frozen dataclasses, named and shaped as the seed says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestra.domain.parameters import Parameter
from orchestra.domain.statuses import RunStatus, StepStatus

# A database row, or any mapping of column names to values.
Row = Mapping[Any, Any]


@dataclass(frozen=True)
class Project:
    identifier: str
    display_name: str
    services: dict[str, Any]
    is_enabled: bool
    concurrency: int | None
    creation_date: datetime
    update_date: datetime

    @classmethod
    def from_row(cls, row: Row) -> Project:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Step:
    name: str
    command: list[str]
    timeout: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "command": list(self.command)}
        if self.timeout is not None:
            data["timeout"] = self.timeout
        return data


@dataclass(frozen=True)
class Job:
    project: str
    identifier: str
    display_name: str
    description: str
    workspace: str
    steps: list[Step]
    parameters: list[Parameter]
    properties: dict[str, Any]
    is_enabled: bool
    lease: float | None
    timeout: float | None
    retry: dict[str, Any] | None
    concurrency: int | None
    priority: int
    expiry: float | None
    retention: dict[str, Any] | None
    # Isolation (docs/isolation.md): {"network": bool} or None, and the steps' limits or None.
    sandbox: dict[str, Any] | None
    limits: dict[str, int] | None
    creation_date: datetime
    update_date: datetime
    # Variables of its steps' processes, {NAME: template} (domain/commands.py), or None.
    environment: dict[str, str] | None = None
    # The files to keep after the steps, [{"path", "when", "report"?}] (domain/artifacts.py).
    artifacts: list[dict[str, Any]] | None = None
    # Its webhook, as stored (its secret encrypted: services/webhook_secrets.py), or None.
    webhook: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Row) -> Job:
        data = {f: row[f] for f in cls.__dataclass_fields__}
        data["steps"] = [
            Step(name=s["name"], command=list(s["command"]), timeout=s.get("timeout"))
            for s in row["steps"]
        ]
        data["parameters"] = [
            Parameter(
                key=p["key"],
                description=p.get("description", ""),
                default=p.get("default"),
                choices=tuple(p["choices"]) if p.get("choices") is not None else None,
                secret=bool(p.get("secret", False)),
            )
            for p in row["parameters"]
        ]
        return cls(**data)


@dataclass(frozen=True)
class RunStep:
    index: int
    name: str
    command: list[str]
    status: StepStatus
    exit_code: int | None = None
    start_date: datetime | None = None
    completion_date: datetime | None = None
    log_size: int = 0
    timeout: float | None = None

    @classmethod
    def from_row(cls, row: Row) -> RunStep:
        data = {f: row[f] for f in cls.__dataclass_fields__}
        data["status"] = StepStatus(row["status"])
        return cls(**data)


# Run fields that are no column of its row.
_NOT_COLUMNS = frozenset({"steps", "waiting_reason", "artifacts"})


@dataclass(frozen=True)
class Run:
    identifier: str
    project: str
    job: str
    parameters: dict[str, str]
    source: dict[str, Any]
    worker: str | None
    status: RunStatus
    workspace: str
    start_date: datetime | None
    completion_date: datetime | None
    should_cancel: bool
    should_abort: bool
    reason: str | None
    lease: float | None
    late_report: str | None
    event_sequence: int
    log_size: int
    timeout: float | None
    retry: dict[str, Any] | None
    priority: int
    expiry_date: datetime | None
    attempt: int
    retry_of: str | None
    retried_by: str | None
    not_before: datetime | None
    secret_parameters: list[str] | None
    warning: str | None
    forced_by: str | None
    # The job's isolation, copied at trigger (what dispatch matches is what the worker gets).
    sandbox: dict[str, Any] | None
    limits: dict[str, int] | None
    creation_date: datetime
    update_date: datetime
    steps: list[RunStep] = field(default_factory=list)
    # Why a pending run has not started yet; computed on request, not stored.
    waiting_reason: str | None = None
    # The job's environment, copied at trigger like its steps ({NAME: template}) or None.
    environment: dict[str, str] | None = None
    # What its steps wrote to ORCHESTRA_RESULTS ({KEY: value}, domain/results.py) or None.
    results: dict[str, str] | None = None
    # The pipeline run and node that started it, if one did.
    pipeline_run: str | None = None
    pipeline_node: str | None = None
    # The job's artifacts entries, copied at trigger; its JUnit counts ({"passed", "failed",
    # "skipped", "failures"}) or None; its stored files [{"path", "size", "sha256"}] (not a
    # column: filled by services/artifacts.py where a run is shown).
    artifact_rules: list[dict[str, Any]] | None = None
    tests: dict[str, Any] | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def shown_parameters(self) -> dict[str, str]:
        """The parameters as people may see them: secret values masked."""
        secret = set(self.secret_parameters or ())
        return {k: ("***" if k in secret else v) for k, v in self.parameters.items()}

    @classmethod
    def from_row(cls, row: Row, steps: list[RunStep] | None = None) -> Run:
        data = {f: row[f] for f in cls.__dataclass_fields__ if f not in _NOT_COLUMNS}
        data["status"] = RunStatus(row["status"])
        return cls(**data, steps=steps or [])


@dataclass(frozen=True)
class Schedule:
    project: str
    identifier: str
    display_name: str
    job: str | None  # exactly one of job and pipeline
    pipeline: str | None
    parameters: dict[str, str]
    expression: str
    time_zone: str
    is_enabled: bool
    last_run: str | None
    overlap: str
    catchup: str
    catchup_window: float | None
    catchup_max: int | None
    next_due_date: datetime | None
    last_fire_date: datetime | None
    last_skip_date: datetime | None
    last_skip_reason: str | None
    queued_due_date: datetime | None
    creation_date: datetime
    update_date: datetime

    @classmethod
    def from_row(cls, row: Row) -> Schedule:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class User:
    identifier: str
    display_name: str
    roles: list[str]
    is_enabled: bool
    creation_date: datetime
    update_date: datetime
    # Group names (project members may be groups); a null column reads as none.
    groups: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Row) -> User:
        data = {f: row[f] for f in cls.__dataclass_fields__ if f != "groups"}
        return cls(**data, groups=list(row.get("groups") or []))


@dataclass(frozen=True)
class Token:
    """A token-type User Authentication, as shown to people: never its secret or hash."""

    identifier: str
    user: str
    description: str
    expiration_date: datetime | None
    last_used_date: datetime | None
    creation_date: datetime
    update_date: datetime
    # Its scopes and projects (domain/access.py); None: all of its user's.
    scopes: list[str] | None = None
    projects: list[str] | None = None

    @classmethod
    def from_row(cls, row: Row) -> Token:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Worker:
    identifier: str
    owner: str
    version: str
    display_name: str
    properties: dict[str, Any]
    is_enabled: bool
    is_approved: bool  # new workers may wait for an administrator's approval
    is_active: bool
    should_disconnect: bool
    executors: int
    last_seen_date: datetime | None
    creation_date: datetime
    update_date: datetime

    @classmethod
    def from_row(cls, row: Row) -> Worker:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})
