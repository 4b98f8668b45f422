"""The live event stream's fan-out (web/event_hub.py), without a server: who may read which
event, an event's frame, a slow client dropped at its queue's bound, and each event encoded
once for every client."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestra.domain.access import Access
from orchestra.services.event_stream import Event
from orchestra.web.event_hub import QUEUE_FRAMES, Client, Encoder, Hub, frame, may_read

RUN_A = Event(1, "run.updated", "a", "r1", "running")
RUN_B = Event(2, "run.created", "b", "r2", "pending")
WORKER = Event(3, "worker.updated", None, "w1", None)
FIRED = Event(4, "schedule.fired", "a", "nightly", "fired")


def test_a_member_of_a_sees_a_only_and_no_worker() -> None:
    member = Access.build([], {"a": "viewer"})
    assert [may_read(member, e, None) for e in (RUN_A, RUN_B, WORKER, FIRED)] == [
        True,
        False,
        False,
        True,
    ]


def test_a_global_viewer_sees_everything_and_a_project_filter_narrows() -> None:
    viewer = Access.build(["viewer"])
    assert all(may_read(viewer, e, None) for e in (RUN_A, RUN_B, WORKER, FIRED))
    assert [may_read(viewer, e, "b") for e in (RUN_A, RUN_B, WORKER, FIRED)] == [
        False,
        True,
        False,
        False,
    ]


def test_a_token_limited_to_projects_sees_them_and_no_worker() -> None:
    token = Access.build(["administrator"], scopes=["read"], projects=["b"])
    assert [may_read(token, e, None) for e in (RUN_A, RUN_B, WORKER, FIRED)] == [
        False,
        True,
        False,
        False,
    ]


def test_nobody_without_rights_sees_anything() -> None:
    nobody = Access.build([])
    assert not any(may_read(nobody, e, None) for e in (RUN_A, RUN_B, WORKER, FIRED))


def test_a_frame_is_an_event_of_server_sent_events() -> None:
    assert frame(7, "run.updated", b'{"a":1}') == b'id: 7\nevent: run.updated\ndata: {"a":1}\n\n'
    assert frame(None, "reset", b"{}") == b"event: reset\ndata: {}\n\n"


async def test_a_slow_client_is_dropped_at_its_queue_s_bound() -> None:
    client = Client(Access.build(["viewer"]))
    for _ in range(QUEUE_FRAMES + 10):
        client.offer(b"x")
    assert client.dropped
    frames = [client.queue.get_nowait() for _ in range(client.queue.qsize())]
    assert frames[-1] is None  # the end mark: its response ends there
    assert len(frames) == QUEUE_FRAMES


async def test_each_event_is_encoded_once_and_handed_to_those_who_may_read_it() -> None:
    encoded: list[Any] = []

    def run(found: Any) -> Any:
        encoded.append(found)
        return {"identifier": found}

    hub = Hub(services=None, encoder=Encoder(run=run, worker=dict, schedule=dict))  # type: ignore[arg-type]
    readers = [Client(Access.build(["viewer"])) for _ in range(100)]
    member_of_b = Client(Access.build([], {"b": "viewer"}))
    resumed = Client(Access.build(["viewer"]), after=1)
    for client in (*readers, member_of_b, resumed):
        hub.register(client)
    frames = hub.frames([RUN_A], {("run", "r1", "a"): "r1"})
    hub.publish(frames)
    assert encoded == ["r1"]
    assert all(c.queue.qsize() == 1 for c in readers)
    assert member_of_b.queue.qsize() == 0
    assert resumed.queue.qsize() == 0  # it had that one already
    assert hub.handed == 1
    got = readers[0].queue.get_nowait()
    assert got == b'id: 1\nevent: run.updated\ndata: {"identifier":"r1"}\n\n'
    # A deleted object is sent as such.
    (gone,) = hub.frames([RUN_B], {})
    assert b'"deleted": true' in gone[1]
    await asyncio.sleep(0)


def test_rights_checked_again_narrow_what_a_client_gets() -> None:
    client = Client(Access.build(["viewer"]))
    assert client.wants(RUN_A) and client.wants(WORKER)
    client.rights_changed(Access.build([], {"b": "viewer"}))
    assert not client.wants(RUN_A) and not client.wants(WORKER)
    assert client.wants(RUN_B)
