"""The master-worker protocol: typed messages, one JSON object per WebSocket text frame.

Every message has a `type`. Worker events about a run carry a `sequence` numbered from 1 per
run; the master applies each exactly once, in order, and acknowledges the highest one it has
committed. docs/protocol.md describes the exchanges.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestra.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_OUTPUT_CHUNK = 256 * 1024  # bytes of output in one event, before base64
MAX_FRAME_BYTES = 16 * 1024 * 1024
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
RunId = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
Sequence = Annotated[int, Field(ge=1, le=2**53)]
StepIndex = Annotated[int, Field(ge=0, le=10_000)]
EndStatus = Literal["succeeded", "failed", "aborted", "exception"]
PropertyValue = str | int | float | bool


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Run events, worker to master.


class StepStarted(Message):
    kind: Literal["step_started"] = "step_started"
    sequence: Sequence
    step: StepIndex
    date: datetime


class StepOutput(Message):
    kind: Literal["output"] = "output"
    sequence: Sequence
    step: StepIndex
    offset: Annotated[int, Field(ge=0, le=2**53)]  # position in the whole run log
    data: Annotated[str, Field(max_length=MAX_OUTPUT_CHUNK * 4 // 3 + 8)]  # base64


class StepEnded(Message):
    kind: Literal["step_ended"] = "step_ended"
    sequence: Sequence
    step: StepIndex
    status: EndStatus
    exit_code: int | None = None
    date: datetime


class RunEnded(Message):
    kind: Literal["run_ended"] = "run_ended"
    sequence: Sequence
    status: EndStatus
    reason: Annotated[str, Field(max_length=2000)] | None = None
    date: datetime


Event = Annotated[StepStarted | StepOutput | StepEnded | RunEnded, Field(discriminator="kind")]


# Worker to master.


class Hello(Message):
    type: Literal["hello"] = "hello"
    protocol: int
    identifier: Identifier
    display_name: Annotated[str, Field(max_length=200)]
    version: Annotated[str, Field(max_length=100)]
    properties: Mapping[Annotated[str, Field(min_length=1, max_length=100)], PropertyValue]
    executors: Annotated[int, Field(ge=1, le=256)]
    runs: Annotated[list[RunId], Field(max_length=10_000)] = []


class Report(Message):
    type: Literal["report"] = "report"
    run: RunId
    events: Annotated[list[Event], Field(min_length=1, max_length=1000)]


class Heartbeat(Message):
    type: Literal["heartbeat"] = "heartbeat"


class Capacity(Message):
    """Whether the worker takes new runs (it stops when its disk is full, and says why)."""

    type: Literal["capacity"] = "capacity"
    accepting: bool
    reason: Annotated[str, Field(max_length=500)] | None = None


WorkerMessage = Annotated[Hello | Report | Heartbeat | Capacity, Field(discriminator="type")]


# Master to worker.


class RunDecision(Message):
    action: Literal["resume", "discard"]
    acknowledged: int = 0
    reason: str | None = None


class Welcome(Message):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    heartbeat_interval: float
    runs: dict[str, RunDecision] = {}


class AssignedStep(Message):
    name: str
    command: list[str]
    timeout: float | None = None


class Assign(Message):
    type: Literal["assign"] = "assign"
    run: str
    project: str
    job: str
    parameters: dict[str, str]
    workspace: str
    steps: list[AssignedStep]
    abort_grace: float
    url: str
    timeout: float | None = None
    # Values to mask in the output (secret parameters), before it leaves the worker.
    secrets: list[str] = []


class Ack(Message):
    type: Literal["ack"] = "ack"
    run: str
    sequence: int


class Abort(Message):
    type: Literal["abort"] = "abort"
    run: str


class Discard(Message):
    type: Literal["discard"] = "discard"
    run: str
    reason: str


class Drain(Message):
    type: Literal["drain"] = "drain"


MasterMessage = Annotated[
    Welcome | Assign | Ack | Abort | Discard | Drain, Field(discriminator="type")
]

_worker_messages: TypeAdapter[Any] = TypeAdapter(WorkerMessage)
_master_messages: TypeAdapter[Any] = TypeAdapter(MasterMessage)


def decode_worker_message(frame: str | bytes) -> Hello | Report | Heartbeat | Capacity:
    """Parse a worker's frame; ProtocolError (the connection closes with it) when invalid."""
    return _decode(_worker_messages, frame)  # type: ignore[no-any-return]


def decode_master_message(frame: str | bytes) -> Welcome | Assign | Ack | Abort | Discard | Drain:
    return _decode(_master_messages, frame)  # type: ignore[no-any-return]


def _decode(adapter: TypeAdapter[Any], frame: str | bytes) -> Any:
    if isinstance(frame, bytes):
        raise ProtocolError("binary frames are not part of the protocol")
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("frame too large")
    try:
        return adapter.validate_json(frame)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            raise ProtocolError("invalid message") from None
        where = ".".join(str(p) for p in errors[0]["loc"])
        raise ProtocolError(f"invalid message: {where}: {errors[0]['msg']}") from None


def encode(message: Message) -> str:
    return message.model_dump_json()


# WebSocket close codes (4000-4999 are the application's).
CLOSE_PROTOCOL_ERROR = 4000
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_REPLACED = 4008
CLOSE_DISCONNECT_REQUESTED = 4010
CLOSE_SERVICE_RESTART = 1012
