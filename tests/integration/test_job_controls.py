"""Job controls on real databases, with a controllable clock: priorities and fair shares in
dispatch order, concurrency caps, retries and their chain, queue expiry, forced statuses and
secret parameters."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from orchestra.domain.statuses import RunStatus
from orchestra.errors import Conflict, InvalidInput
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.master_side import MasterSide
from orchestra.storage import records
from orchestra.storage import runs as run_storage
from orchestra.storage.schema import worker as worker_table
from tests.conftest import MakeUser, build_services
from tests.helpers import API, ManualClock, RecordingClient, auth

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STEP = {"name": "a", "command": ["true"]}


async def job(services: Services, project: str, identifier: str, **controls: object) -> None:
    try:
        await services.projects.create_project({"identifier": project})
    except Conflict:
        pass
    await services.projects.create_job(
        project, {"identifier": identifier, "steps": [STEP], **controls}
    )


def execution(services: Services) -> MasterSide:
    return MasterSide.build(services, "test")


async def add_worker(services: Services, identifier: str = "w") -> None:
    try:
        await services.users.create_user("owner", roles=["worker"])
    except Conflict:
        pass
    async with services.db.transaction() as conn:
        await records.insert(
            conn,
            worker_table,
            {
                "identifier": identifier,
                "owner": "owner",
                "version": "test",
                "display_name": identifier,
                "properties": {},
                "is_enabled": True,
                "is_active": True,
                "should_disconnect": False,
                "executors": 100,
                "master": "test",
                "last_seen_date": services.clock.now(),
            },
        )


async def finish(services: Services, run: str, status: str, worker: str = "w") -> None:
    """Play a worker's report for a claimed run: started, a line of output, ended."""
    now = services.clock.now()
    report = m.Report(
        run=run,
        events=[
            m.StepStarted(sequence=1, step=0, date=now),
            m.StepOutput(sequence=2, step=0, offset=0, data=base64.b64encode(b"hi\n").decode()),
            m.StepEnded(
                sequence=3,
                step=0,
                status=status,
                exit_code=0 if status == "succeeded" else 1,
                date=now,
            ),  # type: ignore[arg-type]
            m.RunEnded(sequence=4, status=status, date=now),  # type: ignore[arg-type]
        ],
    )
    await execution(services).reports.apply_report(worker, report)


@pytest.fixture
async def controlled(database_url: str, tmp_path: Path) -> Services:
    services = build_services(database_url, tmp_path, ManualClock(T0))
    yield services  # type: ignore[misc]
    await services.close()


async def test_dispatch_takes_higher_priority_first_then_oldest(controlled: Services) -> None:
    await job(controlled, "p", "j")
    clock: ManualClock = controlled.clock  # type: ignore[assignment]
    low = await controlled.runs.trigger("p", "j", {}, {})
    clock.advance(1)
    high = await controlled.runs.trigger("p", "j", {}, {}, priority=10)
    clock.advance(1)
    later = await controlled.runs.trigger("p", "j", {}, {})
    order = [c.identifier for c in await execution(controlled).dispatching.candidates()]
    assert order == [high.identifier, low.identifier, later.identifier]


async def test_dispatch_shares_turns_between_projects_when_one_floods(
    controlled: Services,
) -> None:
    clock: ManualClock = controlled.clock  # type: ignore[assignment]
    for project in ("flood", "a", "b"):
        await job(controlled, project, "j")
    async with controlled.db.transaction() as conn:  # one transaction: a thousand at once
        for _ in range(1000):
            await controlled.runs.trigger_in(conn, "flood", "j", {}, {})
    clock.advance(1)
    for project in ("a", "b"):
        for _ in range(5):
            await controlled.runs.trigger(project, "j", {}, {})
    first = await execution(controlled).dispatching.candidates(batch=15)
    by_project = [c.project for c in first]
    # The two small projects get their share of the first places despite arriving last.
    assert by_project.count("a") == 5 and by_project.count("b") == 5
    assert by_project.count("flood") == 5
    assert set(by_project[:3]) == {"flood", "a", "b"}


async def test_concurrency_caps_hold_back_runs_until_a_slot_frees(controlled: Services) -> None:
    await job(controlled, "p", "capped", concurrency=2)
    await add_worker(controlled)
    runs = [await controlled.runs.trigger("p", "capped", {}, {}) for _ in range(4)]
    engine = execution(controlled)
    candidates = await engine.dispatching.candidates()
    assert [c.identifier for c in candidates] == [r.identifier for r in runs[:2]]
    # Even asked for all four, the claim gives out only the two slots.
    won = await engine.dispatching.claim({r.identifier: "w" for r in runs})
    assert len(won) == 2
    waiting = await controlled.runs.get_run("p", runs[2].identifier)
    assert waiting.waiting_reason is not None
    assert "concurrency limit (2)" in waiting.waiting_reason
    assert won[0].identifier in waiting.waiting_reason
    await finish(controlled, won[0].identifier, "failed")  # any final status frees the slot
    assert [c.identifier for c in await engine.dispatching.candidates()] == [runs[2].identifier]


async def test_project_concurrency_caps_all_its_jobs(controlled: Services) -> None:
    await controlled.projects.create_project({"identifier": "p", "concurrency": 1})
    await job(controlled, "p", "one")
    await job(controlled, "p", "two")
    await add_worker(controlled)
    first = await controlled.runs.trigger("p", "one", {}, {})
    second = await controlled.runs.trigger("p", "two", {}, {})
    engine = execution(controlled)
    assert [r.identifier for r in await engine.dispatching.claim({first.identifier: "w"})] == [
        first.identifier
    ]
    assert await engine.dispatching.candidates() == []
    waiting = await controlled.runs.get_run("p", second.identifier)
    assert "project's concurrency limit (1)" in (waiting.waiting_reason or "")


async def test_retry_makes_a_linked_run_after_an_exponential_delay(controlled: Services) -> None:
    clock: ManualClock = controlled.clock  # type: ignore[assignment]
    await job(controlled, "p", "flaky", retry={"count": 2, "delay": 10, "on": ["failed"]})
    await add_worker(controlled)
    engine = execution(controlled)
    first = await controlled.runs.trigger("p", "flaky", {}, {})
    await engine.dispatching.claim({first.identifier: "w"})
    await finish(controlled, first.identifier, "failed")
    runs, _ = await controlled.runs.list_runs("p")
    second = runs[0]
    assert second.retry_of == first.identifier and second.attempt == 2
    assert second.not_before == T0 + timedelta(seconds=10)
    assert await engine.dispatching.candidates() == []  # waiting out the delay
    clock.advance(10)
    assert [c.identifier for c in await engine.dispatching.candidates()] == [second.identifier]
    await engine.dispatching.claim({second.identifier: "w"})
    await finish(controlled, second.identifier, "failed")
    runs, _ = await controlled.runs.list_runs("p")
    third = runs[0]
    assert third.attempt == 3 and third.retry_of == second.identifier
    assert third.not_before == clock.now() + timedelta(seconds=20)
    clock.advance(20)
    await engine.dispatching.claim({third.identifier: "w"})
    await finish(controlled, third.identifier, "failed")
    runs, _ = await controlled.runs.list_runs("p")
    assert len(runs) == 3  # the count is spent: no fourth attempt
    assert all(r.status is RunStatus.FAILED for r in runs)


async def test_retry_on_exception_only_by_default(controlled: Services) -> None:
    await job(controlled, "p", "j", retry={"count": 1})
    await add_worker(controlled)
    engine = execution(controlled)
    failed = await controlled.runs.trigger("p", "j", {}, {})
    await engine.dispatching.claim({failed.identifier: "w"})
    await finish(controlled, failed.identifier, "failed")
    assert len((await controlled.runs.list_runs("p"))[0]) == 1
    lost = await controlled.runs.trigger("p", "j", {}, {})
    await engine.dispatching.claim({lost.identifier: "w"})
    clock: ManualClock = controlled.clock  # type: ignore[assignment]
    clock.advance(3600)  # the worker is gone longer than the lease
    assert await engine.leases.expire_leases(600, 5, []) == 1
    runs, _ = await controlled.runs.list_runs("p")
    assert runs[0].retry_of == lost.identifier and runs[0].status is RunStatus.PENDING


async def test_job_expiry_overrides_the_default(controlled: Services) -> None:
    clock: ManualClock = controlled.clock  # type: ignore[assignment]
    await job(controlled, "p", "quick", expiry=60)
    await job(controlled, "p", "patient")
    quick = await controlled.runs.trigger("p", "quick", {}, {})
    patient = await controlled.runs.trigger("p", "patient", {}, {})
    clock.advance(61)
    assert await execution(controlled).leases.expire_pending(86400) == 1
    expired = await controlled.runs.get_run("p", quick.identifier)
    assert expired.status is RunStatus.CANCELLED and "expired" in (expired.reason or "")
    assert (await controlled.runs.get_run("p", patient.identifier)).status is RunStatus.PENDING


async def test_trigger_warns_when_no_registered_worker_could_match(controlled: Services) -> None:
    await job(controlled, "p", "nowhere", properties={"os": "plan9"})
    run = await controlled.runs.trigger("p", "nowhere", {}, {})
    assert run.warning == "no registered worker has the properties os=plan9"
    assert run.status is RunStatus.PENDING  # accepted all the same


async def test_force_ends_a_running_run_and_says_who(controlled: Services) -> None:
    await job(controlled, "p", "j")
    await add_worker(controlled)
    run = await controlled.runs.trigger("p", "j", {}, {})
    with pytest.raises(Conflict):
        await controlled.runs.force("p", run.identifier, "failed", "why", "op")
    await execution(controlled).dispatching.claim({run.identifier: "w"})
    with pytest.raises(InvalidInput):
        await controlled.runs.force("p", run.identifier, "succeeded", "lie", "op")
    with pytest.raises(InvalidInput):
        await controlled.runs.force("p", run.identifier, "failed", " ", "op")
    forced = await controlled.runs.force("p", run.identifier, "exception", "host died", "op")
    assert forced.status is RunStatus.EXCEPTION
    assert forced.forced_by == "op" and forced.reason == "forced by op: host died"
    # The worker's late report is refused and kept aside.
    await finish(controlled, run.identifier, "succeeded")
    late = await controlled.runs.get_run("p", run.identifier)
    assert late.status is RunStatus.EXCEPTION and "refused" in (late.late_report or "")


async def test_secret_parameters_never_appear_in_the_api(
    api: RecordingClient, make_user: MakeUser
) -> None:
    headers = auth(await make_user("admin", ["administrator"]))
    await api.request("PUT", f"{API}/projects/p", json={}, headers=headers)
    definition = {
        "steps": [{"name": "a", "command": ["echo", "{parameters[token]}"]}],
        "parameters": [
            {"key": "token", "secret": True},
            {"key": "color", "choices": ["red", "blue"], "default": "red"},
        ],
    }
    response = await api.request(
        "PUT", f"{API}/projects/p/jobs/j", json=definition, headers=headers
    )
    assert response.status_code == 201, response.text
    body = {"parameters": {"token": "s3cr3t-value"}, "priority": 7}
    response = await api.request(
        "POST", f"{API}/projects/p/jobs/j/trigger", json=body, headers=headers
    )
    assert response.status_code == 201
    run = response.json()
    assert run["parameters"] == {"token": "***", "color": "red"}
    assert run["priority"] == 7 and run["attempt"] == 1
    listed = await api.request("GET", f"{API}/projects/p/runs", headers=headers)
    assert "s3cr3t-value" not in listed.text
    shown = await api.request("GET", f"{API}/projects/p/runs/{run['identifier']}", headers=headers)
    assert "s3cr3t-value" not in shown.text
    bad = {"parameters": {"token": "x", "color": "green"}}
    response = await api.request(
        "POST", f"{API}/projects/p/jobs/j/trigger", json=bad, headers=headers
    )
    assert response.status_code == 422 and "must be one of" in response.json()["detail"]


async def test_a_triggered_run_is_what_the_database_holds(controlled: Services) -> None:
    """The trigger builds its answer from what it wrote (no read-back): it must be the run as
    stored, field for field, steps included."""
    await job(
        controlled,
        "p",
        "full",
        parameters=[{"key": "k", "default": "v"}, {"key": "s", "default": "x", "secret": True}],
        retry={"count": 2, "delay": 10, "on": ["failed"]},
        lease=30,
        timeout=60,
        expiry=600,
        priority=4,
    )
    run = await controlled.runs.trigger("p", "full", {"k": "w"}, {"type": "api", "user": "u"})
    async with controlled.db.read() as conn:
        assert run == await run_storage.get_run(conn, run.identifier)
    assert run.parameters["k"] == "w" and run.secret_parameters == ["s"]
    # A secret parameter's value is stored encrypted (services/parameter_secrets.py).
    assert controlled.keyring.decrypt(run.parameters["s"], "parameter") == "x"
    assert [s.name for s in run.steps] == ["a"] and run.steps[0].status.value == "pending"


@pytest.fixture
async def two_masters(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Services, Services]]:
    """Two masters' services on one database, each with its own clock at T0."""
    first = build_services(database_url, tmp_path / "one", ManualClock(T0))
    second = build_services(database_url, tmp_path / "two", ManualClock(T0))
    yield first, second
    await first.close()
    await second.close()


async def test_two_masters_dispatching_at_once_claim_each_run_once_within_the_cap(
    two_masters: tuple[Services, Services],
) -> None:
    """Two masters' dispatch passes at the same moment, on one database: every run goes to one
    of them (PostgreSQL: the candidates one master locked are skipped by the other), and a
    concurrency cap holds across both."""
    first, second = two_masters
    await job(first, "p", "free")
    await job(first, "p", "capped", concurrency=3)
    await add_worker(first, "w1")
    await add_worker(first, "w2")
    free = [await first.runs.trigger("p", "free", {}, {"type": "api"}) for _ in range(20)]
    for _ in range(10):
        await first.runs.trigger("p", "capped", {}, {"type": "api"})

    def to(worker: str):  # type: ignore[no-untyped-def]
        def match(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
            return {c.identifier: worker for c in candidates[:4]}, True

        return match

    masters = [(execution(first), "w1"), (execution(second), "w2")]
    won: list[tuple[str, str]] = []
    for _ in range(8):
        passes = await asyncio.gather(*(e.dispatching.dispatch(16, to(w)) for e, w in masters))
        won += [(r.identifier, r.worker) for d in passes for r in d.won]  # type: ignore[misc]

    claimed = [run for run, _ in won]
    assert len(claimed) == len(set(claimed))  # no run claimed twice
    assert {r.identifier for r in free} <= set(claimed)  # and none left behind
    rows = await first.runs.list_runs("p", job="capped", limit=50)
    assert sum(r.status.value == "running" for r in rows[0]) == 3
    for run, worker in won:
        assert (await first.runs.get_run("p", run)).worker == worker


async def test_a_cap_set_while_a_pass_runs_holds_against_its_claim(
    database_url: str, controlled: Services
) -> None:
    """PostgreSQL dispatches uncapped runs outside a transaction (read, then claim): a cap
    that appears between the read and the claim still holds, by the claim's own guard, and
    the passes after it count the cap the transactional way."""
    if controlled.db.is_sqlite:
        pytest.skip("SQLite's pass is one write transaction: no cap can change during it")
    import psycopg

    await job(controlled, "p", "j")
    await add_worker(controlled)
    runs = [await controlled.runs.trigger("p", "j", {}, {"type": "api"}) for _ in range(3)]
    engine = execution(controlled)

    def one(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
        return {candidates[0].identifier: "w"} if candidates else {}, True

    def one_after_a_cap(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
        url = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE job SET concurrency = 1 WHERE identifier = 'j'")
        return one(candidates)

    first = await engine.dispatching.dispatch(
        16, one
    )  # the first pass is transactional, and finds no cap
    assert [r.identifier for r in first.won] == [runs[0].identifier]
    raced = await engine.dispatching.dispatch(16, one_after_a_cap)  # read uncapped, claimed capped
    assert raced.assignments == {runs[1].identifier: "w"} and raced.won == []
    assert (
        await engine.dispatching.dispatch(16, one)
    ).won == []  # the cap, counted: one runs already

    await finish(controlled, runs[0].identifier, "succeeded")
    assert [r.identifier for r in (await engine.dispatching.dispatch(16, one)).won] == [
        runs[1].identifier
    ]
    statuses = [(await controlled.runs.get_run("p", r.identifier)).status for r in runs]
    assert statuses == [RunStatus.SUCCEEDED, RunStatus.RUNNING, RunStatus.PENDING]


def statements_run(services: Services) -> list[str]:
    """Every statement sent to the database from now on, on any of its engines."""
    sent: list[str] = []
    for engine in services.db.engines:

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _sent(*arguments: Any) -> None:
            sent.append(arguments[2])

    return sent


def refuse_to_match(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
    raise AssertionError("a plain pass matches nothing in Python")


async def test_a_plain_pass_is_one_statement_in_dispatch_order(controlled: Services) -> None:
    """PostgreSQL: runs that any worker can take (no cap, no properties) are read, ordered,
    locked and claimed by one statement, in the order the general pass would take them, each
    for the worker the master's matching would give it."""
    if controlled.db.is_sqlite:
        pytest.skip("SQLite's pass is in-process: no round trip to save")
    clock: ManualClock = controlled.clock  # type: ignore[assignment]
    for project in ("flood", "a"):
        await job(controlled, project, "j")
    for worker in ("w1", "w2"):
        await add_worker(controlled, worker)
    for _ in range(6):
        await controlled.runs.trigger("flood", "j", {}, {"type": "api"})
        clock.advance(1)
    for priority in (None, 10, None):
        await controlled.runs.trigger("a", "j", {}, {"type": "api"}, priority=priority)
        clock.advance(1)
    engine = execution(controlled)
    expected = [c.identifier for c in await engine.dispatching.candidates()][:5]
    # The first pass finds out what the head of the queue holds (and claims nothing here).
    assert (await engine.dispatching.dispatch(16, lambda found: ({}, True))).won == []

    sent = statements_run(controlled)
    plain = ["w1", "w2", "w1", "w2", "w1"]
    dispatched = await engine.dispatching.dispatch(16, refuse_to_match, plain)

    assert len(sent) == 1
    assert [r.identifier for r in dispatched.won] == expected
    assert [r.worker for r in dispatched.won] == plain
    assert all(r.status == RunStatus.RUNNING and len(r.steps) == 1 for r in dispatched.won)
    assert dispatched.full  # four runs are still pending
    for run in dispatched.won:
        stored = await controlled.runs.get_run(run.project, run.identifier)
        assert stored.worker == run.worker and stored.status == RunStatus.RUNNING


async def test_a_pass_whose_head_is_not_plain_is_matched(controlled: Services) -> None:
    """A run with properties at the head of the queue: the one statement claims nothing and
    the pass is matched the general way (in Python, against each worker's properties)."""
    if controlled.db.is_sqlite:
        pytest.skip("SQLite's pass is in-process: no round trip to save")
    await job(controlled, "p", "plain")
    await controlled.projects.create_job(
        "p", {"identifier": "picky", "steps": [STEP], "properties": {"os": "plan9"}}
    )
    await add_worker(controlled, "w1")
    engine = execution(controlled)
    first = await controlled.runs.trigger("p", "plain", {}, {"type": "api"})
    assert (await engine.dispatching.dispatch(16, lambda found: ({}, True))).won == []
    picky = await controlled.runs.trigger("p", "picky", {}, {"type": "api"})
    matched: list[list[str]] = []

    def match(candidates: list) -> tuple[dict[str, str], bool]:  # type: ignore[type-arg]
        matched.append([c.identifier for c in candidates])
        return {c.identifier: "w1" for c in candidates if not c.properties}, True

    dispatched = await engine.dispatching.dispatch(16, match, ["w1", "w1"])

    assert matched == [[first.identifier, picky.identifier]]
    assert [r.identifier for r in dispatched.won] == [first.identifier]
    left = await controlled.runs.get_run("p", picky.identifier)
    assert left.status == RunStatus.PENDING


async def test_two_masters_plain_passes_at_once_claim_each_run_once(
    two_masters: tuple[Services, Services],
) -> None:
    """Two masters' one-statement passes at the same moment: the runs one locked are skipped
    by the other, and every run goes to exactly one worker."""
    first, second = two_masters
    if first.db.is_sqlite:
        pytest.skip("SQLite's pass is in-process: no round trip to save")
    await job(first, "p", "j")
    await add_worker(first, "w1")
    await add_worker(first, "w2")
    runs = [await first.runs.trigger("p", "j", {}, {"type": "api"}) for _ in range(30)]
    masters = [(execution(first), "w1"), (execution(second), "w2")]
    for engine, _ in masters:  # each learns that the head is plain
        await engine.dispatching.dispatch(16, lambda found: ({}, True))
    won: list[tuple[str, str | None]] = []
    for _ in range(4):
        passes = await asyncio.gather(
            *(e.dispatching.dispatch(16, refuse_to_match, [w] * 4) for e, w in masters)
        )
        won += [(r.identifier, r.worker) for d in passes for r in d.won]
    claimed = [run for run, _ in won]
    assert sorted(claimed) == sorted(r.identifier for r in runs)  # each once, none left
    for run, worker in won:
        assert (await first.runs.get_run("p", run)).worker == worker


async def test_one_claim_gives_each_run_to_its_worker_and_none_to_a_disabled_one(
    controlled: Services,
) -> None:
    await job(controlled, "p", "j")
    for worker in ("w1", "w2", "off"):
        await add_worker(controlled, worker)
    async with controlled.db.transaction() as conn:
        await records.update(conn, worker_table, {"identifier": "off"}, {"is_enabled": False})
    runs = [await controlled.runs.trigger("p", "j", {}, {"type": "api"}) for _ in range(4)]
    wanted = dict(zip((r.identifier for r in runs), ("w1", "w2", "w1", "off"), strict=True))

    won = await execution(controlled).dispatching.claim(wanted)

    assert {r.identifier: r.worker for r in won} == {k: v for k, v in wanted.items() if v != "off"}
    left = await controlled.runs.get_run("p", runs[3].identifier)
    assert left.status.value == "pending" and left.worker is None
