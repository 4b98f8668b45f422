"""Request and response bodies of the HTTP API. Responses never carry a password, a token
secret (except once, at creation) or a hash."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from orchestra.web.api.webhook_schemas import WebhookDef, WebhookOut

T = TypeVar("T")
Scalar = str | int | float | bool
PropertyValue = Scalar | list[Scalar]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
    previous_cursor: str | None = Field(
        default=None,
        description="the cursor of the page before this one (newer items, in a newest-first "
        "list), given as `cursor`; null on the first page",
    )


# Errors.


class ErrorOut(BaseModel):
    detail: str


# Users, tokens, logins.


class UserOut(Out):
    identifier: str
    display_name: str
    roles: list[str]
    groups: list[str] = Field(default_factory=list)
    is_enabled: bool
    creation_date: datetime
    update_date: datetime


class UserIn(Body):
    identifier: str
    display_name: str | None = None
    roles: list[str] = Field(default_factory=list)
    password: str | None = None
    is_enabled: bool = True


class UserPatch(Body):
    display_name: str | None = None
    roles: list[str] | None = None
    groups: list[str] | None = None
    is_enabled: bool | None = None
    password: str | None = None
    # With a new password: revoke the user's API tokens too (their login sessions always end).
    revoke_tokens: bool | None = None


class TokenOut(Out):
    identifier: str
    user: str
    description: str
    expiration_date: datetime | None
    last_used_date: datetime | None
    creation_date: datetime
    update_date: datetime
    scopes: list[str] | None = None  # None: all of its user's rights
    projects: list[str] | None = None  # None: every project its user may reach


class TokenCreated(TokenOut):
    secret: str


class TokenIn(Body):
    description: str | None = None
    expiration_date: datetime | None = None
    scopes: list[str] | None = None  # read, trigger, write, admin; None: all of the user's
    projects: list[str] | None = None  # project identifiers; None: not limited


class LoginIn(Body):
    user: str = Field(max_length=1000)
    password: str = Field(max_length=2000)


class LoginOut(BaseModel):
    user: str
    token: str
    expiration_date: datetime | None


class PasswordIn(Body):
    old_password: str = Field(max_length=2000)
    new_password: str = Field(max_length=2000)
    # Revoke one's API tokens too (other login sessions always end; the caller's stays).
    revoke_tokens: bool = False


# Projects, jobs, schedules.


class ProjectOut(Out):
    identifier: str
    display_name: str
    services: dict[str, Any]
    is_enabled: bool
    concurrency: int | None = None
    artifacts_size: int | None = Field(
        default=None, description="bytes its runs' artifacts take (shown on one project)"
    )
    creation_date: datetime
    update_date: datetime


class ProjectIn(Body):
    identifier: str
    display_name: str | None = None
    services: dict[str, Any] | None = None
    is_enabled: bool | None = None
    concurrency: int | None = None


class ProjectPatch(Body):
    identifier: str | None = None
    display_name: str | None = None
    services: dict[str, Any] | None = None
    is_enabled: bool | None = None
    concurrency: int | None = None


class ArtifactOut(BaseModel):
    path: str
    size: int
    sha256: str


class TestsOut(BaseModel):
    passed: int
    failed: int
    skipped: int
    failures: list[str] = Field(description="the failed tests' names")


class ArtifactDef(Body):
    path: str = Field(description="a glob relative to the workspace (`**` spans folders)")
    when: Literal["success", "failure", "always"] | None = Field(
        default=None, description="collect after a run that ended so (default: success)"
    )
    report: Literal["junit"] | None = Field(
        default=None, description="junit: a JUnit XML report whose counts go on the run"
    )


class StepDef(Body):
    name: str | None = None
    command: list[str]
    timeout: float | None = None


class RetryDef(Body):
    count: int
    delay: float | None = None
    on: list[Literal["exception", "failed"]] | None = None


class SandboxDef(Body):
    network: bool = Field(
        default=True, strict=True, description="false: no network at all, loopback included"
    )


class LimitsDef(Body):
    memory_mb: int | None = Field(default=None, strict=True, description="address space, MiB")
    processes: int | None = Field(default=None, strict=True, description="processes at once")
    open_files: int | None = Field(default=None, strict=True, description="open files each")
    cpu_seconds: int | None = Field(default=None, strict=True, description="CPU time each")


class RetentionDef(Body):
    days: float | None = Field(
        default=None, strict=True, description="keep final runs this many days"
    )
    runs: int | None = Field(
        default=None, strict=True, description="keep only this many newest final runs"
    )


class ParameterDef(Body):
    key: str
    description: str | None = None
    default: Scalar | None = None
    choices: list[Scalar] | None = None
    secret: bool | None = None


class StepOut(Out):
    name: str
    command: list[str]
    timeout: float | None = None


class ParameterOut(Out):
    key: str
    description: str
    default: str | None = None
    choices: list[str] | None = None
    secret: bool = False


class JobOut(Out):
    project: str
    identifier: str
    display_name: str
    description: str
    workspace: str
    steps: list[StepOut]
    parameters: list[ParameterOut]
    properties: dict[str, Any]
    is_enabled: bool
    lease: float | None
    timeout: float | None = None
    retry: dict[str, Any] | None = None
    concurrency: int | None = None
    priority: int = 0
    expiry: float | None = None
    retention: dict[str, Any] | None = None
    sandbox: dict[str, Any] | None = None
    limits: dict[str, int] | None = None
    environment: dict[str, str] | None = None
    artifacts: list[ArtifactDef] | None = None
    webhook: WebhookOut | None = None
    creation_date: datetime
    update_date: datetime


class JobControls(Body):
    lease: float | None = None
    timeout: float | None = None
    retry: RetryDef | None = None
    concurrency: int | None = None
    priority: int | None = None
    expiry: float | None = None
    retention: RetentionDef | None = None
    sandbox: SandboxDef | None = Field(
        default=None, description="run each step in a sandbox (docs/isolation.md)"
    )
    limits: LimitsDef | None = Field(
        default=None, description="limits of each step's processes (docs/isolation.md)"
    )
    environment: dict[str, str] | None = Field(
        default=None,
        description="variables of the steps' processes, {NAME: template}: the command "
        "template fields and {secrets[NAME]} (ORCHESTRA_* names are reserved)",
    )
    artifacts: list[ArtifactDef] | None = Field(
        default=None,
        description="files to keep after the steps: globs relative to the workspace "
        "(docs/artifacts.md)",
    )
    webhook: WebhookDef | None = Field(
        default=None, description="runs started by signed deliveries (docs/events.md)"
    )


class JobIn(JobControls):
    identifier: str
    display_name: str | None = None
    description: str | None = None
    workspace: str | None = None
    steps: list[StepDef]
    parameters: list[ParameterDef] | None = None
    properties: dict[str, PropertyValue] | None = None
    is_enabled: bool | None = None


class JobPut(JobIn):
    identifier: str | None = None  # type: ignore[assignment]  # taken from the path


class JobPatch(JobControls):
    identifier: str | None = None
    display_name: str | None = None
    description: str | None = None
    workspace: str | None = None
    steps: list[StepDef] | None = None
    parameters: list[ParameterDef] | None = None
    properties: dict[str, PropertyValue] | None = None
    is_enabled: bool | None = None


class ScheduleOut(Out):
    project: str
    identifier: str
    display_name: str
    job: str | None  # exactly one of job and pipeline
    pipeline: str | None = None
    parameters: dict[str, Any]
    expression: str
    time_zone: str
    is_enabled: bool
    last_run: str | None
    overlap: str
    catchup: str
    catchup_window: float | None
    catchup_max: int | None
    description: str
    next_due_dates: list[datetime]
    last_fire_date: datetime | None
    last_skip_date: datetime | None
    last_skip_reason: str | None
    queued_due_date: datetime | None
    creation_date: datetime
    update_date: datetime


class SchedulePolicies(Body):
    overlap: Literal["skip", "queue", "allow"] | None = None
    catchup: Literal["latest", "none", "all"] | None = None
    catchup_window: float | None = None
    catchup_max: int | None = None


class ScheduleIn(SchedulePolicies):
    identifier: str
    display_name: str | None = None
    job: str | None = None  # exactly one of job and pipeline
    pipeline: str | None = None
    parameters: dict[str, Scalar] | None = None
    expression: str
    time_zone: str | None = None
    is_enabled: bool | None = None


class SchedulePut(ScheduleIn):
    identifier: str | None = None  # type: ignore[assignment]  # taken from the path


class SchedulePatch(SchedulePolicies):
    identifier: str | None = None
    display_name: str | None = None
    job: str | None = None
    pipeline: str | None = None
    parameters: dict[str, Scalar] | None = None
    expression: str | None = None
    time_zone: str | None = None
    is_enabled: bool | None = None


# Runs.


class TriggerIn(Body):
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    priority: int | None = None


class ForceIn(Body):
    status: Literal["failed", "aborted", "exception"]
    reason: str = Field(min_length=1, max_length=1000)


class RunStepOut(Out):
    index: int
    name: str
    command: list[str]
    status: str
    exit_code: int | None
    start_date: datetime | None
    completion_date: datetime | None
    timeout: float | None = None


class RunOut(Out):
    project: str
    identifier: str
    job: str
    parameters: dict[str, str]
    source: dict[str, Any]
    worker: str | None
    status: str
    steps: list[RunStepOut]
    workspace: str
    start_date: datetime | None
    completion_date: datetime | None
    should_cancel: bool
    should_abort: bool
    reason: str | None
    waiting_reason: str | None = None
    late_report: str | None = None
    warning: str | None = None
    priority: int = 0
    attempt: int = 1
    retry_of: str | None = Field(default=None, description="the run this attempt repeats")
    retried_by: str | None = Field(
        default=None, description="the run that repeats this one (its next attempt)"
    )
    timeout: float | None = None
    expiry_date: datetime | None = None
    not_before: datetime | None = None
    forced_by: str | None = None
    sandbox: dict[str, Any] | None = None
    limits: dict[str, int] | None = None
    results: Annotated[dict[str, str], BeforeValidator(lambda given: given or {})] = Field(
        default_factory=dict, description="what its steps wrote to ORCHESTRA_RESULTS"
    )
    pipeline_run: str | None = Field(default=None, description="the pipeline run that started it")
    pipeline_node: str | None = Field(default=None, description="its node in that pipeline run")
    artifacts: list[ArtifactOut] = Field(
        default_factory=list, description="its stored files (docs/artifacts.md)"
    )
    tests: TestsOut | None = Field(
        default=None, description="the counts of its JUnit reports, if it has any"
    )
    creation_date: datetime
    update_date: datetime


# Workers.


class WorkerOut(Out):
    identifier: str
    owner: str
    version: str
    display_name: str
    properties: dict[str, Any]
    is_enabled: bool
    is_approved: bool
    is_active: bool
    should_disconnect: bool
    executors: int
    last_seen_date: datetime | None
    creation_date: datetime
    update_date: datetime


class WorkerPatch(Body):
    is_enabled: bool | None = None
    # Administrators only (worker.approve): a new worker takes runs once approved.
    is_approved: bool | None = None
    display_name: str | None = None


# Apply.


class ApplyIn(Body):
    projects: list[dict[str, Any]] = Field(default_factory=list)


class ApplyChange(BaseModel):
    kind: str
    identifier: str
    action: str


class ApplyOut(BaseModel):
    changes: list[ApplyChange]


class HealthOut(BaseModel):
    status: str
    version: str
    database: str


class AuditEventOut(Out):
    identifier: int
    date: datetime
    actor: str | None = Field(description="the user who made the change")
    method: str
    route: str = Field(description="the route, as in the API reference")
    path: str = Field(description="the path it was called with")
    status: int
    address: str | None = Field(description="the client's address")
