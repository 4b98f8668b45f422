"""Attacks on the worker endpoint by a holder of a worker token: a second connection with a live
worker's identifier, another user's identifier, hostile frames (naive dates, huge exit codes,
newlines meant to forge lines in the server's log, 50,000 properties), a run ended `succeeded`
while its steps say otherwise, and workers that need an administrator's approval."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.proof import rawworker
from tests.proof.cluster import ProofCluster, proof_job
from tests.proof.invariants import Expect, Ledger
from tests.support.jobs import py
from tests.support.waiting import holds_for, wait_until

PROTOCOL_ERROR = 4000
FORBIDDEN = 4003
IN_USE = 4009


def test_second_connection_for_a_live_worker_is_refused_and_changes_nothing(
    cluster: ProofCluster, ledger: Ledger
) -> None:
    """The same user's token, the identifier of a worker connected and running a run: the
    newcomer is closed 4009 with a reason, the worker keeps its connection and its run
    succeeds whole; another user's token with that identifier is closed 4003."""
    cluster.start()
    real = cluster.start_agent("w1")
    cluster.api.put_job("j", [proof_job(ledger.journal, 40, 0.1)])
    run = ledger.trigger(cluster.api, "j", Expect(lines=40, statuses=frozenset({"succeeded"})))
    wait_until(lambda: b"line 3\n" in cluster.api.log(run), 30, "the run's first lines")
    other = cluster.create_user("intruder", ["worker"])

    async def attempt(token: str) -> tuple[int | None, str]:
        connection = await rawworker.open_connection(cluster.url, token)
        try:
            await connection.send(rawworker.hello("w1", properties={"evil": "yes"}))
            return await rawworker.closed_with(connection, timeout=10)
        finally:
            await connection.close()

    same_user = asyncio.run(attempt(cluster.worker_token))
    assert same_user[0] == IN_USE and "connected" in same_user[1], same_user
    other_user = asyncio.run(attempt(other))
    assert other_user[0] == FORBIDDEN and "another user" in other_user[1], other_user

    report = ledger.verify(cluster.api, deadline=60)
    done = report.runs[run["identifier"]]
    assert done["worker"] == "w1" and done["late_report"] is None, done
    assert real.running() and "closed" not in real.log(), real.tail()
    worker = cluster.api.worker("w1")
    assert worker is not None and "evil" not in worker["properties"], worker


def test_worker_killed_and_restarted_at_once_gets_back_in(
    cluster: ProofCluster, ledger: Ledger
) -> None:
    """Refusing a live identifier does not keep out the worker itself coming back: killed
    (its connection ends) and restarted, it is welcomed and finishes its run."""
    cluster.start()
    worker = cluster.start_agent("w1")
    cluster.api.put_job("j", [proof_job(ledger.journal, 30, 0.1)])
    run = ledger.trigger(cluster.api, "j", Expect(lines=30, statuses=frozenset({"succeeded"})))
    wait_until(lambda: b"line 3\n" in cluster.api.log(run), 30, "the run's first lines")
    worker.kill()
    cluster.start_agent("w1")
    ledger.verify(cluster.api, deadline=60)


def _now() -> str:
    return datetime.now().astimezone().isoformat()


async def _assigned(url: str, token: str, identifier: str, **hello: Any) -> Any:
    """A raw worker welcomed as `identifier`; (connection, the first assignment)."""
    connection = await rawworker.open_connection(url, token)
    await connection.send(rawworker.hello(identifier, **hello))
    welcome = json.loads(await asyncio.wait_for(connection.recv(), 30))
    assert welcome["type"] == "welcome", welcome
    while True:
        message = json.loads(await asyncio.wait_for(connection.recv(), 30))
        if message["type"] == "assign":
            return connection, message


def report(run: str, *events: dict[str, Any]) -> str:
    return json.dumps({"type": "report", "run": run, "events": list(events)})


HOSTILE_HELLOS = {
    "newline in the display name": {"display_name": "w\nFORGED-LINE in the log"},
    "control characters in the display name": {"display_name": "w\x1b[31m\x07"},
    "50,000 properties": {"properties": {f"k{i}": "v" for i in range(50_000)}},
    "101 properties": {"properties": {f"k{i}": "v" for i in range(101)}},
    "a property key that is no identifier": {"properties": {"a b\nFORGED-LINE": "v"}},
    "a property value too long": {"properties": {"k": "v" * 1001}},
    "a newline in the version": {"version": "1\nFORGED-LINE"},
}


def test_hostile_hellos_are_closed_with_a_reason_and_no_traceback(
    cluster: ProofCluster,
) -> None:
    cluster.start()
    token = cluster.create_user("hostile", ["worker"])

    async def attempt(fields: dict[str, Any]) -> tuple[int | None, str]:
        connection = await rawworker.open_connection(cluster.url, token)
        try:
            await connection.send(rawworker.hello("hostile-w", **fields))
            return await rawworker.closed_with(connection, timeout=10)
        finally:
            await connection.close()

    problems = []
    for name, fields in HOSTILE_HELLOS.items():
        code, reason = asyncio.run(attempt(fields))
        if code not in (PROTOCOL_ERROR, 1007) or not reason:
            problems.append(f"{name}: closed {code} {reason!r}")
    assert not problems, "\n".join(problems)
    assert cluster.api.worker("hostile-w") is None
    assert cluster.server is not None
    log = cluster.server.log()
    assert "Traceback" not in log, cluster.server.tail()
    assert not re.search(r"^FORGED-LINE", log, re.MULTILINE), cluster.server.tail()


def test_hostile_reports_are_closed_with_a_reason_and_no_traceback(
    cluster: ProofCluster,
) -> None:
    """A naive date, an exit code of 2**70, a capacity reason with a newline: each closes the
    connection 4000 with a reason (or, for the reason, is logged escaped), never a traceback."""
    cluster.start()
    token = cluster.create_user("hostile", ["worker"])
    cluster.api.put_job("j", [["true"]])
    naive = datetime.now().replace(tzinfo=None).isoformat()
    started = {"kind": "step_started", "sequence": 1, "step": 0, "date": _now()}
    ended = {"kind": "step_ended", "sequence": 2, "step": 0, "status": "failed"}
    cases = {
        "a naive date": [{**started, "date": naive}],
        "an exit code of 2**70": [started, {**ended, "exit_code": 2**70, "date": _now()}],
        "a run end with a naive date": [
            started,
            {"kind": "run_ended", "sequence": 2, "status": "failed", "date": naive},
        ],
    }

    async def attempt(events: list[dict[str, Any]]) -> tuple[int | None, str]:
        cluster.api.trigger("j")
        # The run of an earlier case may come first (it went back to pending): either will do.
        connection, assigned = await _assigned(cluster.url, token, "hostile-w")
        try:
            await connection.send(report(assigned["run"], *events))
            return await rawworker.closed_with(connection, timeout=10)
        finally:
            await connection.close()

    problems = []
    for name, events in cases.items():
        code, reason = asyncio.run(attempt(events))
        if code != PROTOCOL_ERROR or not reason:
            problems.append(f"{name}: closed {code} {reason!r}")
        cluster.api.wait_for_worker("hostile-w", is_active=False)
    assert not problems, "\n".join(problems)

    async def capacity() -> None:
        connection = await rawworker.open_connection(cluster.url, token)
        try:
            await rawworker.welcomed(connection, "hostile-c")
            frame = {"type": "capacity", "accepting": False, "reason": "full\nFORGED-LINE x"}
            await connection.send(json.dumps(frame))
            await connection.send(rawworker.HEARTBEAT)
            assert cluster.server is not None
            await asyncio.to_thread(
                wait_until,
                lambda: "hostile-c takes no new runs" in cluster.server.log(),  # type: ignore[union-attr]
                10,
                "the capacity line in the server's log",
            )
        finally:
            await connection.close()

    asyncio.run(capacity())
    assert cluster.server is not None
    log = cluster.server.log()
    assert "Traceback" not in log, cluster.server.tail()
    assert not re.search(r"^FORGED-LINE", log, re.MULTILINE), cluster.server.tail()


def test_run_ended_succeeded_with_a_step_still_running_ends_exception(
    cluster: ProofCluster,
) -> None:
    """A worker says a two-step run succeeded after starting its first step only: the run
    ends `exception` with a reason saying so, and no step is left running or pending."""
    cluster.start()
    token = cluster.create_user("liar", ["worker"])
    cluster.api.put_job("j", [["true"], ["true"]])
    run = cluster.api.trigger("j")["identifier"]

    async def lie() -> dict[str, Any]:
        connection, assigned = await _assigned(cluster.url, token, "liar-w")
        try:
            assert assigned["run"] == run
            events = [
                {"kind": "step_started", "sequence": 1, "step": 0, "date": _now()},
                {"kind": "run_ended", "sequence": 2, "status": "succeeded", "date": _now()},
            ]
            await connection.send(report(run, *events))
            while True:
                message = json.loads(await asyncio.wait_for(connection.recv(), 30))
                if message["type"] == "ack":
                    return dict(message)
        finally:
            await connection.close()

    ack = asyncio.run(lie())
    assert ack["sequence"] == 2, ack
    done = cluster.api.get_run(run)
    assert done["status"] == "exception", done
    assert "succeeded" in done["reason"] and "step" in done["reason"], done["reason"]
    statuses = [s["status"] for s in done["steps"]]
    assert statuses == ["exception", "skipped"], statuses


def test_run_ended_failed_with_no_failed_step_ends_exception(cluster: ProofCluster) -> None:
    cluster.start()
    token = cluster.create_user("liar", ["worker"])
    cluster.api.put_job("j", [["true"]])
    run = cluster.api.trigger("j")["identifier"]

    async def lie() -> None:
        connection, _assigned_run = await _assigned(cluster.url, token, "liar-w")
        try:
            events = [
                {"kind": "step_started", "sequence": 1, "step": 0, "date": _now()},
                {"kind": "step_ended", "sequence": 2, "step": 0, "status": "succeeded",
                 "exit_code": 0, "date": _now()},
                {"kind": "run_ended", "sequence": 3, "status": "failed", "date": _now()},
            ]  # fmt: skip
            await connection.send(report(run, *events))
            while json.loads(await asyncio.wait_for(connection.recv(), 30))["type"] != "ack":
                pass
        finally:
            await connection.close()

    asyncio.run(lie())
    done = cluster.api.get_run(run)
    assert done["status"] == "exception", done
    assert "failed" in done["reason"], done["reason"]
    assert [s["status"] for s in done["steps"]] == ["succeeded"]


def _website(cluster: ProofCluster, token: str) -> httpx.Client:
    return httpx.Client(base_url=cluster.url, cookies={"orchestra_session": token}, timeout=10)


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_new_worker_waits_for_an_administrators_approval(cluster: ProofCluster) -> None:
    """With approval required a new worker is recorded unapproved and gets no run; an operator
    can approve it neither through the API nor the website, an administrator can (the button
    on the worker's page), and the run then goes to it. Withdrawn, the approval holds new runs
    back again."""
    cluster.start(settings={"ORCHESTRA_REQUIRE_WORKER_APPROVAL": "true"})
    cluster.api.put_job("j", [py("print('approved and ran')")])
    worker = cluster.start_agent("w1")
    shown = cluster.api.worker("w1")
    assert shown is not None and shown["is_approved"] is False, shown
    run = cluster.api.trigger("j")
    holds_for(lambda: cluster.api.get_run(run)["status"] == "pending", 3.0, "the run stays pending")

    operator_token = cluster.create_user("op", ["operator"])
    operator = cluster.client(token=operator_token)
    refused = operator.request("PATCH", "/workers/w1", 403, json={"is_approved": True})
    assert "worker.approve" in refused.json()["detail"], refused.json()
    operator.request("PATCH", "/workers/w1", 200, json={"is_enabled": True})
    with _website(cluster, operator_token) as browser:
        page = browser.get("/workers/w1")
        assert page.status_code == 200 and "awaiting approval" in page.text
        assert "/workers/w1/approval" not in page.text
        posted = browser.post(
            "/workers/w1/approval", data={"csrf_token": _csrf(page), "is_approved": "true"}
        )
        assert posted.status_code in (303, 403), posted.status_code
    assert cluster.api.worker("w1")["is_approved"] is False  # type: ignore[index]

    with _website(cluster, cluster.admin_token) as browser:
        page = browser.get("/workers/w1")
        assert 'action="/workers/w1/approval"' in page.text and "Approve" in page.text
        approved = browser.post(
            "/workers/w1/approval", data={"csrf_token": _csrf(page), "is_approved": "true"}
        )
        assert approved.status_code == 303, approved.text
    assert cluster.api.worker("w1")["is_approved"] is True  # type: ignore[index]
    done = cluster.api.wait_for_status(run, "succeeded", timeout=30)
    assert done["worker"] == "w1"
    assert b"approved and ran" in cluster.api.log(run)

    assert cluster.api.patch_worker("w1", is_approved=False)["is_approved"] is False
    held = cluster.api.trigger("j")
    holds_for(lambda: cluster.api.get_run(held)["status"] == "pending", 2.0, "held back again")
    cluster.api.patch_worker("w1", is_approved=True)
    cluster.api.wait_for_status(held, "succeeded", timeout=30)
    assert worker.running()


def test_local_workers_are_approved_from_the_start(cluster: ProofCluster) -> None:
    """`orchestra server --workers 1 --require-worker-approval`: its local worker takes runs."""
    _server, url = cluster.start_role(
        "server",
        arguments=["--workers", "1", "--worker-sandbox", "never", "--require-worker-approval"],
    )
    api = cluster.use(url)
    api.put_project("p")
    api.put_job("j", [py("print('local')")])
    wait_until(lambda: api.worker("local-1"), 60, "the local worker")
    assert api.worker("local-1")["is_approved"] is True  # type: ignore[index]
    api.wait_for_status(api.trigger("j"), "succeeded", timeout=60)
