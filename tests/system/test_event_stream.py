"""The live event stream (GET /api/v1/events, CONTRACT.md section 8) from real servers and
workers on both engines: a run's life in order, resuming after a gap without loss, `reset` for
an id no longer kept, what each caller may read, keep-alive comments, and (PostgreSQL) an event
made through one API server streamed by another."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import API, free_port
from tests.support.sse import EventStream, Received, of_subject

ORDER = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def statuses(events: list[Received]) -> list[str]:
    return [e.json["status"] for e in events]


def ids(events: list[Received]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


def finished(subject: str, status: str = "succeeded"):  # type: ignore[no-untyped-def]
    def check(events: list[Received]) -> bool:
        return any(e.json.get("status") == status for e in of_subject(events, subject))

    return check


def test_a_run_s_life_streams_in_order(cluster: Cluster) -> None:
    cluster.start(settings={"ORCHESTRA_EVENTS_KEEP_ALIVE": "0.5"})
    cluster.start_worker("w1")
    api = cluster.api
    api.put_job("two", [py("print('one')"), py("print('two')")])
    stream = EventStream(cluster.url, bearer(cluster.admin_token))
    try:
        assert stream.status == 200
        run = api.trigger("two")
        events = stream.wait_for(finished(run["identifier"]), 60, "the run's end")
        mine = of_subject(events, run["identifier"])
        assert mine[0].event == "run.created"
        assert {e.event for e in mine[1:]} <= {"run.updated"}
        shown = statuses(mine)
        assert shown[-1] == "succeeded"
        assert [ORDER[s] for s in shown] == sorted(ORDER[s] for s in shown), shown
        assert "running" in shown
        every = ids(stream.received())
        assert every == sorted(every) and len(set(every)) == len(every)
        # The data is the run as the API shows it.
        assert mine[-1].json == api.get_run(run)
        # The worker's connection was streamed too (its state before it connected aside).
        # Keep-alive comments come while nothing happens.
        stream.wait_for(lambda _: len(stream.comments) >= 2, 10, "keep-alive comments")
        assert all(text == "keep-alive" for text, _ in stream.comments)
    finally:
        stream.close()


def test_a_stream_resumed_after_a_gap_loses_nothing(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1", executors=2)
    api = cluster.api
    api.put_job("quick", [py("print('hi')")])
    first = EventStream(cluster.url, bearer(cluster.admin_token))
    try:
        run = api.trigger("quick")
        events = first.wait_for(finished(run["identifier"]), 60, "the first run's end")
        last = events[-1].id
        assert last is not None
    finally:
        first.close()
    # Meanwhile, while nobody listens: three runs from start to end.
    missed = [api.trigger("quick")["identifier"] for _ in range(3)]
    for identifier in missed:
        api.wait_for_status(identifier, "succeeded", 60)
    resumed = EventStream(cluster.url, {**bearer(cluster.admin_token), "Last-Event-ID": last})
    try:
        events = resumed.wait_for(
            lambda got: all(finished(r)(got) for r in missed), 30, "the missed runs' ends"
        )
        assert events[0].event != "reset"
        assert all(int(e.id or 0) > int(last) for e in events)
        every = ids(events)
        assert every == sorted(every) and len(set(every)) == len(every)
        for identifier in missed:
            mine = of_subject(events, identifier)
            assert mine[0].event == "run.created"
        # Nothing of before the id given comes again.
        assert not of_subject(events, run["identifier"])
    finally:
        resumed.close()
    # `?after=` resumes the same way.
    again = EventStream(cluster.url, bearer(cluster.admin_token), {"after": last})
    try:
        again.wait_for(lambda got: all(finished(r)(got) for r in missed), 30, "?after=")
    finally:
        again.close()


def test_reset_for_an_id_no_longer_kept_or_unknown(cluster: Cluster) -> None:
    cluster.start()
    api = cluster.api
    api.put_job("never", [py("print('x')")])
    for _ in range(4):
        api.trigger("never")  # no worker: run.created rows only
    engine = sa.create_engine(_sync_url(cluster.database_url))
    try:
        with engine.begin() as conn:
            newest = conn.scalar(sa.text("SELECT max(identifier) FROM event_log"))
            # As the upkeep prunes: the oldest rows go.
            conn.execute(sa.text("DELETE FROM event_log WHERE identifier < :n"), {"n": newest - 1})
    finally:
        engine.dispose()
    for headers, params in (
        ({"Last-Event-ID": "1"}, {}),  # older than what is kept
        ({}, {"after": newest + 1000}),  # never given
        ({"Last-Event-ID": "not-a-cursor"}, {}),
    ):
        stream = EventStream(cluster.url, {**bearer(cluster.admin_token), **headers}, params)
        try:
            (reset,) = stream.wait_for(lambda got: len(got) >= 1, 10, "reset")[:1]
            assert reset.event == "reset"
            assert reset.id is not None and int(reset.id) >= newest
        finally:
            stream.close()
    # An id still kept resumes without a reset.
    stream = EventStream(cluster.url, bearer(cluster.admin_token), {"after": newest - 1})
    try:
        (event,) = stream.wait_for(lambda got: len(got) >= 1, 10, "the kept event")[:1]
        assert event.event == "run.created" and event.id == str(newest)
    finally:
        stream.close()


def test_each_caller_gets_only_what_it_may_read(cluster: Cluster) -> None:
    cluster.start()
    api = cluster.api
    api.put_project("b")
    api.put_job("a-job", [py("print('a')")])
    api.put_job("b-job", [py("print('b')")], project="b")
    api.request("POST", "/users", 201, json={"identifier": "vera", "roles": []})
    api.request("POST", "/projects/p/members", (200, 201), json={"user": "vera", "role": "viewer"})
    vera = api.request("POST", "/users/vera/tokens", 201, json={}).json()["secret"]
    narrow = api.request(
        "POST", "/users/admin/tokens", 201, json={"projects": ["b"], "scopes": ["read"]}
    ).json()["secret"]
    member = EventStream(cluster.url, bearer(vera))
    limited = EventStream(cluster.url, bearer(narrow))
    admin_b = EventStream(cluster.url, bearer(cluster.admin_token), {"project": "b"})
    admin = EventStream(cluster.url, bearer(cluster.admin_token))
    streams = (member, limited, admin_b, admin)
    try:
        # 404 for a project the caller may not see, 401 without credentials.
        assert (
            httpx.get(
                cluster.url + API + "/events", params={"project": "b"}, headers=bearer(vera)
            ).status_code
            == 404
        )
        assert httpx.get(cluster.url + API + "/events").status_code == 401
        a_run = api.trigger("a-job")["identifier"]
        b_run = api.trigger("b-job", project="b")["identifier"]
        cluster.start_worker("w1")  # a worker.updated for those who may read workers
        for stream in streams:
            stream.wait_for(lambda got: len(got) >= 1, 30, "some event")
        admin.wait_for(
            lambda got: (
                {"run.created", "worker.updated"} <= {e.event for e in got}
                and all(of_subject(got, r) for r in (a_run, b_run))
            ),
            60,
            "every event",
        )
        for stream in (member, limited, admin_b):
            # What the admin saw after it: all of it has reached the others by now.
            stream.wait_for(lambda got: len(got) >= 1, 10, "events")
        member.wait_for(lambda got: bool(of_subject(got, a_run)), 30, "project p's run")
        limited.wait_for(lambda got: bool(of_subject(got, b_run)), 30, "project b's run")
        admin_b.wait_for(lambda got: bool(of_subject(got, b_run)), 30, "project b's run")
        admin.wait_for(finished(a_run), 60, "the runs' ends")
        admin.wait_for(finished(b_run), 60, "the runs' ends")
        member.wait_for(finished(a_run), 30, "p's end for the member")
        limited.wait_for(finished(b_run), 30, "b's end for the limited token")
        for got in (member.received(),):
            assert not of_subject(got, b_run)
            assert {e.json.get("project") for e in got} == {"p"}
            assert all(e.event != "worker.updated" for e in got)
        for got in (limited.received(), admin_b.received()):
            assert not of_subject(got, a_run)
            assert {e.json.get("project") for e in got} == {"b"}
            assert all(e.event != "worker.updated" for e in got)
    finally:
        for stream in streams:
            stream.close()


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_an_event_made_on_one_api_server_streams_on_another(cluster: Cluster) -> None:
    _master, _m = cluster.start_role("master-1", "master", port=free_port())
    _api1, a1 = cluster.start_role("api-1", "api", port=free_port())
    _api2, a2 = cluster.start_role("api-2", "api", port=free_port())
    one = cluster.client(a1)
    try:
        one.put_project("p")
        one.put_job("j", [py("print('x')")])
        stream = EventStream(a2, bearer(cluster.admin_token))
        try:
            run = one.trigger("j")
            (created,) = stream.wait_for(
                lambda got: bool(of_subject(got, run["identifier"])), 10, "the run on api-2"
            )[:1]
            assert created.event == "run.created"
            assert created.json["identifier"] == run["identifier"]
        finally:
            stream.close()
    finally:
        one.close()


def _sync_url(url: str) -> str:
    parsed = sa.engine.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
