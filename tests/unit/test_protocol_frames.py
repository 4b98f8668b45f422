"""orchestra.protocol.messages: binary report frames and the heartbeat fast path."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m

RUN = "0f0e0d0c-0b0a-4908-8706-050403020100"
DATE = "2026-11-28T12:00:00+00:00"
OVER = m.MAX_OUTPUT_CHUNK + 1


def output(sequence: int, offset: int, size: int, step: int = 0) -> dict[str, Any]:
    return {"kind": "output", "sequence": sequence, "step": step, "offset": offset, "size": size}


def test_binary_report_round_trips_events_and_exact_bytes() -> None:
    first = bytes(range(256)) * 3  # every byte value, none of it text
    second = b"\x00\xff\n" * 1000
    events = [
        {"kind": "step_started", "sequence": 1, "step": 0, "date": DATE},
        output(2, 0, len(first)),
        output(3, len(first), len(second)),
        {"kind": "step_ended", "sequence": 4, "step": 0, "status": "succeeded", "exit_code": 0,
         "date": DATE},
        {"kind": "run_ended", "sequence": 5, "status": "succeeded", "reason": None, "date": DATE},
    ]  # fmt: skip
    frame = m.encode_report_frame(RUN, events, [first, second])
    report = m.decode_worker_message(frame)
    assert isinstance(report, m.Report)
    assert report.run == RUN
    assert [e.sequence for e in report.events] == [1, 2, 3, 4, 5]
    outputs = [e for e in report.events if isinstance(e, m.StepOutput)]
    assert [(o.offset, o.data) for o in outputs] == [(0, first), (len(first), second)]
    assert isinstance(report.events[0], m.StepStarted)
    assert isinstance(report.events[4], m.RunEnded)


def test_empty_output_and_largest_chunk_are_accepted() -> None:
    big = b"x" * m.MAX_OUTPUT_CHUNK
    frame = m.encode_report_frame(RUN, [output(1, 0, 0), output(2, 0, len(big))], [b"", big])
    report = m.decode_worker_message(frame)
    assert isinstance(report, m.Report)
    assert [e.data for e in report.events if isinstance(e, m.StepOutput)] == [b"", big]


def frame_with(header: Any, payload: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack(">I", len(encoded)) + encoded + payload


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"", "too short"),
        (b"\x00\x00", "too short"),
        (struct.pack(">I", 100) + b"{}", "shorter than its header"),
        (frame_with({"type": "report", "run": RUN, "events": [output(1, 0, 5)]}, b"abc"),
         "shorter than its output"),
        (frame_with({"type": "report", "run": RUN, "events": [output(1, 0, 2)]}, b"abc"),
         "longer than its output"),
        (frame_with({"type": "report", "run": RUN, "events": [output(1, 0, OVER)]}, b"a" * OVER),
         "invalid message"),
        (frame_with({"type": "report", "run": RUN, "events": [output(0, 0, 1)]}, b"a"),
         "invalid message"),
        (frame_with({"type": "report", "run": RUN, "events": []}), "invalid message"),
        (frame_with({"type": "report", "run": "../etc", "events": [output(1, 0, 1)]}, b"a"),
         "invalid message"),
        (frame_with({"type": "heartbeat"}), "invalid message"),
        (frame_with({"type": "report", "run": RUN, "events": [
            {"kind": "output", "sequence": 1, "step": 0, "offset": 0, "data": "YQ=="}]}),
         "invalid message"),
        (struct.pack(">I", 3) + b"{no", "invalid message"),
        (b"\x00" * (m.MAX_FRAME_BYTES + 1), "too large"),
    ],
)  # fmt: skip
def test_malformed_binary_frames_are_protocol_errors(frame: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        m.decode_worker_message(frame)


def test_text_report_with_base64_output_is_still_accepted() -> None:
    text = json.dumps(
        {
            "type": "report",
            "run": RUN,
            "events": [
                {"kind": "output", "sequence": 1, "step": 0, "offset": 0,
                 "data": base64.b64encode(b"hi\n").decode()},
            ],
        }
    )  # fmt: skip
    report = m.decode_worker_message(text)
    assert isinstance(report, m.Report)
    event = report.events[0]
    assert isinstance(event, m.StepOutput)
    assert event.data == base64.b64encode(b"hi\n").decode()


@pytest.mark.parametrize(
    "frame", [m.encode(m.Heartbeat()), json.dumps({"type": "heartbeat"}), '{ "type":"heartbeat" }']
)
def test_heartbeats_decode_whatever_their_spacing(frame: str) -> None:
    assert isinstance(m.decode_worker_message(frame), m.Heartbeat)


def test_master_messages_in_binary_frames_are_refused() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        m.decode_master_message(b'{"type":"drain"}')
