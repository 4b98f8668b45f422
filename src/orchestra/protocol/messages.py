"""The master-worker protocol: typed messages, one JSON object per WebSocket text frame.

Every message has a `type`. Worker events about a run carry a `sequence` numbered from 1 per
run; the master applies each exactly once, in order, and acknowledges the highest one it has
committed. docs/protocol.md describes the exchanges.

Reports go in binary frames (`encode_report_frame`): a JSON header, then the output bytes
as they are, so output is neither base64-encoded nor parsed as JSON. The master still accepts
a report as a text frame with base64 output.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from orchestra.domain import results as results_rules
from orchestra.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_OUTPUT_CHUNK = 1 << 20  # bytes of output in one event (the master stores it as one chunk)
MAX_FRAME_BYTES = 16 * 1024 * 1024
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
RunId = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
EventSequence = Annotated[int, Field(ge=1, le=2**53)]
StepIndex = Annotated[int, Field(ge=0, le=10_000)]
EndStatus = Literal["succeeded", "failed", "aborted", "exception"]
# An exit status as a process can have one: within a 32-bit signed integer.
ExitCode = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
# Dates with their offset: a naive date is refused (its time zone is anyone's guess).
Date = AwareDatetime


def _no_control_characters(value: str) -> str:
    """Text a worker sends that the master shows and logs: one line, no control characters
    (a newline would forge a line in the master's log), no lone surrogates."""
    for char in value:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"must not contain control characters ({char!r})")
    return value


def _storable(value: str) -> str:
    """Text stored as it is (a run's reason, shown escaped, never logged): no NUL, which
    PostgreSQL refuses, and no lone surrogates, which no encoding writes."""
    for char in value:
        if char == "\x00" or 0xD800 <= ord(char) <= 0xDFFF:
            raise ValueError(f"must not contain {char!r}")
    return value


# One line of text (see _no_control_characters).
OneLine = AfterValidator(_no_control_characters)

MAX_PROPERTIES = 100
PropertyKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")]
PropertyValue = (
    Annotated[str, Field(max_length=1000), OneLine]
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Run events, worker to master.


class StepStarted(Message):
    kind: Literal["step_started"] = "step_started"
    sequence: EventSequence
    step: StepIndex
    date: Date


class StepOutput(Message):
    kind: Literal["output"] = "output"
    sequence: EventSequence
    step: StepIndex
    offset: Annotated[int, Field(ge=0, le=2**53)]  # position in the whole run log
    # base64 in a text frame; the bytes themselves when the report came in a binary frame
    data: Annotated[str, Field(max_length=MAX_OUTPUT_CHUNK * 4 // 3 + 8)] | bytes
    # When the worker read this output from the step (its lines' timestamps); workers before
    # it was added send none, and the master then stamps the output when it stores it.
    date: Date | None = None


def _bounded_results(value: dict[str, str] | None) -> dict[str, str] | None:
    """A step's results as the master takes them (domain/results.py): keys by the pattern,
    storable values, at most the run's limit in all."""
    if value is None:
        return None
    for key, text in value.items():
        if not results_rules.valid_key(key):
            raise ValueError(f"result key {key[:20]!r} does not match {results_rules.KEY_PATTERN}")
        problem = results_rules.problem_with_value(text)
        if problem is not None:
            raise ValueError(f"the value of result {key!r} {problem}")
    if results_rules.results_size(value) > results_rules.MAX_RESULTS_BYTES:
        raise ValueError(f"results over {results_rules.MAX_RESULTS_BYTES} bytes")
    return value


class StepEnded(Message):
    kind: Literal["step_ended"] = "step_ended"
    sequence: EventSequence
    step: StepIndex
    status: EndStatus
    exit_code: ExitCode | None = None
    date: Date
    # What the step wrote to its ORCHESTRA_RESULTS file (docs/protocol.md); left out when
    # none, so that a master older than it still takes the step's end.
    results: Annotated[
        dict[str, str] | None,
        Field(exclude_if=lambda value: value is None),
        AfterValidator(_bounded_results),
    ] = None


class RunEnded(Message):
    kind: Literal["run_ended"] = "run_ended"
    sequence: EventSequence
    status: EndStatus
    reason: Annotated[str, Field(max_length=2000), AfterValidator(_storable)] | None = None
    date: Date


Event = Annotated[StepStarted | StepOutput | StepEnded | RunEnded, Field(discriminator="kind")]


# Worker to master.


class Hello(Message):
    type: Literal["hello"] = "hello"
    protocol: int
    identifier: Identifier
    display_name: Annotated[str, Field(max_length=200), OneLine]
    version: Annotated[str, Field(max_length=100), OneLine]
    properties: Annotated[Mapping[PropertyKey, PropertyValue], Field(max_length=MAX_PROPERTIES)]
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
    # Only logged (escaped there): a worker's disk-full reason names its directory, any path.
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


class AssignedSandbox(Message):
    """Run each step in a sandbox (docs/isolation.md); `network: false` cuts it off."""

    network: bool = True


PositiveCount = Annotated[int, Field(ge=1, le=2**53)]


class AssignedLimits(Message):
    """Limits of each step's processes (docs/isolation.md)."""

    memory_mb: PositiveCount | None = None
    processes: PositiveCount | None = None
    open_files: PositiveCount | None = None
    cpu_seconds: PositiveCount | None = None


class AssignedArtifact(Message):
    """A job's artifacts entry (docs/artifacts.md): a glob relative to the workspace, when to
    collect it (the run's outcome), and `report: junit` for a JUnit XML report."""

    path: str
    when: Literal["success", "failure", "always"] = "success"
    report: Literal["junit"] | None = None


class AssignedInput(Message):
    """An artifact of one of a pipeline node's direct needs' runs, which the worker puts in
    the node's workspace at `path` before its first step (docs/artifacts.md)."""

    run: str
    project: str
    path: Annotated[str, Field(min_length=1, max_length=1000)]
    size: Annotated[int, Field(ge=0, le=2**53)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


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
    # Isolation: left out of the message when unset (`encode`), so that a worker older than
    # them, which refuses fields it does not know, still takes the runs that do not use them
    # (and a sandboxed run goes only to a worker that says sandbox=true, which old ones never
    # do).
    sandbox: AssignedSandbox | None = None
    limits: AssignedLimits | None = None
    # The job's environment ({NAME: template}) and the project secrets the run uses, by name
    # (each value is in `secrets` too): left out when unset, as the isolation fields are.
    environment: dict[str, str] | None = None
    secret_values: dict[str, str] | None = None
    # The job's artifacts to collect after the steps (copied to the run at trigger): left out
    # when the job has none, as the isolation fields are.
    artifacts: list[AssignedArtifact] | None = None
    # A pipeline node's needs' artifacts to fetch before its first step: left out when none.
    inputs: list[AssignedInput] | None = None


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

# Binary reports: the header of an output event gives the size of its bytes instead of them.


class OutputHeader(Message):
    kind: Literal["output"] = "output"
    sequence: EventSequence
    step: StepIndex
    offset: Annotated[int, Field(ge=0, le=2**53)]
    size: Annotated[int, Field(ge=0, le=MAX_OUTPUT_CHUNK)]
    date: Date | None = None


class ReportHeader(Message):
    type: Literal["report"] = "report"
    run: RunId
    events: Annotated[
        list[
            Annotated[
                StepStarted | OutputHeader | StepEnded | RunEnded, Field(discriminator="kind")
            ]
        ],
        Field(min_length=1, max_length=1000),
    ]


_worker_messages: TypeAdapter[Any] = TypeAdapter(WorkerMessage)
_master_messages: TypeAdapter[Any] = TypeAdapter(MasterMessage)
_report_headers: TypeAdapter[Any] = TypeAdapter(ReportHeader)
_HEADER_SIZE = struct.Struct(">I")
# A heartbeat as workers write it (compact, or as Python's json.dumps does), recognised
# without a parser: a master receives one per worker every few seconds.
_HEARTBEAT_FRAMES = frozenset(('{"type":"heartbeat"}', '{"type": "heartbeat"}'))
HEARTBEAT_FRAME_BYTES = frozenset(f.encode() for f in _HEARTBEAT_FRAMES)
_HEARTBEAT = Heartbeat()


def decode_worker_message(frame: str | bytes) -> Hello | Report | Heartbeat | Capacity:
    """Parse a worker's frame; ProtocolError (the connection closes with it) when invalid."""
    if isinstance(frame, bytes):
        return _decode_report_frame(frame)
    if frame in _HEARTBEAT_FRAMES:
        return _HEARTBEAT
    return _decode(_worker_messages, frame)  # type: ignore[no-any-return]


def decode_master_message(frame: str | bytes) -> Welcome | Assign | Ack | Abort | Discard | Drain:
    if isinstance(frame, bytes):
        raise ProtocolError("binary frames are not part of the protocol")
    return _decode(_master_messages, frame)  # type: ignore[no-any-return]


def encode_report_frame(
    run: str, events: Sequence[Mapping[str, Any]], payloads: Sequence[bytes]
) -> bytes:
    """A report as a binary frame: the header's length (4 bytes, big-endian), the header
    (a report whose output events carry `size` instead of `data`), then the output bytes of
    those events, in their order."""
    header = json.dumps(
        {"type": "report", "run": run, "events": events}, separators=(",", ":")
    ).encode()
    return b"".join((_HEADER_SIZE.pack(len(header)), header, *payloads))


def _decode_report_frame(frame: bytes) -> Report:
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("frame too large")
    if len(frame) < _HEADER_SIZE.size:
        raise ProtocolError("binary frame too short")
    (length,) = _HEADER_SIZE.unpack_from(frame)
    position = _HEADER_SIZE.size + length
    if position > len(frame):
        raise ProtocolError("binary frame shorter than its header")
    header: ReportHeader = _decode(_report_headers, frame[_HEADER_SIZE.size : position])
    view = memoryview(frame)
    events: list[Any] = []
    for event in header.events:
        if isinstance(event, OutputHeader):
            end = position + event.size
            if end > len(frame):
                raise ProtocolError("binary frame shorter than its output")
            data = bytes(view[position:end])
            position = end
            events.append(
                StepOutput.model_construct(
                    sequence=event.sequence,
                    step=event.step,
                    offset=event.offset,
                    data=data,
                    date=event.date,
                )
            )
        else:
            events.append(event)
    if position != len(frame):
        raise ProtocolError("binary frame longer than its output")
    return Report.model_construct(run=header.run, events=events)


def _decode(adapter: TypeAdapter[Any], frame: str | bytes) -> Any:
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


_ASSIGN_ADDITIONS = ("sandbox", "limits", "environment", "secret_values", "artifacts", "inputs")


def encode(message: Message) -> str:
    if isinstance(message, Assign):
        unset = {name for name in _ASSIGN_ADDITIONS if getattr(message, name) is None}
        return message.model_dump_json(exclude=unset or None)
    return message.model_dump_json()


# WebSocket close codes (4000-4999 are the application's).
CLOSE_PROTOCOL_ERROR = 4000
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_REPLACED = 4008
CLOSE_IN_USE = 4009
CLOSE_DISCONNECT_REQUESTED = 4010
CLOSE_SERVICE_RESTART = 1012
