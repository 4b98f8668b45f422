"""Bad input: fuzzed worker frames close that connection with a reason and touch nothing else;
oversized HTTP bodies get 413; a 5 MB line without a newline is stored whole; odd identifiers and
names are refused or stored and escaped, never a 500; invalid and never-firing cron expressions
are refused with 422."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from orchestra.errors import ProtocolError
from orchestra.protocol.messages import decode_worker_message
from tests.proof import rawworker
from tests.proof.cluster import ProofCluster, proof_job
from tests.proof.conftest import choose
from tests.proof.invariants import Expect, Ledger
from tests.support.jobs import py
from tests.support.processes import API
from tests.support.waiting import wait_until

PROTOCOL_ERROR = 4000
FORBIDDEN = 4003
TOO_BIG = 1009


def _now() -> str:
    return datetime.now(UTC).isoformat()


def report(run: str, **event: Any) -> str:
    base = {"kind": "run_ended", "sequence": 1, "status": "failed", "date": _now()}
    return json.dumps({"type": "report", "run": run, "events": [{**base, **event}]})


def mutations(rng: random.Random, count: int) -> list[tuple[bool, str]]:
    """Random variations of valid messages: (after a hello?, frame)."""
    odd: list[Any] = [None, -1, 0, 2**64, 1.5, True, "", "x" * 300, [], {}, "\u202e", "../x"]
    valid_hello = json.loads(rawworker.hello("fuzz-m"))
    valid_report = json.loads(report("00000000-0000-0000-0000-000000000000"))
    found = []
    for _ in range(count):
        after_hello = rng.random() < 0.5
        message = json.loads(json.dumps(valid_report if after_hello else valid_hello))
        target = message["events"][0] if after_hello and rng.random() < 0.6 else message
        key = rng.choice(sorted(target))
        roll = rng.random()
        if roll < 0.6:
            target[key] = rng.choice(odd)
        elif roll < 0.8:
            del target[key]
        else:
            target[rng.choice(["extra", "Type", "__proto__"])] = rng.choice(odd)
        found.append((after_hello, json.dumps(message)))
    return found


def expected_close(name: str, identifier: str | None, frames: list[Any]) -> set[int | str]:
    """How the master should end a fuzz connection: its close codes, or "open" if it keeps it."""
    if name == "huge frame":
        return {TOO_BIG}
    if name == "invalid UTF-8 text frame":
        return {PROTOCOL_ERROR, 1007}
    if name == "another user's worker identifier":
        return {FORBIDDEN}
    if name.startswith("mutation"):
        try:
            message = decode_worker_message(frames[0])
        except ProtocolError:
            return {PROTOCOL_ERROR}
        # A valid hello in the version spoken is welcomed and kept; a valid report names a run
        # that is not this worker's; anything else closes with a reason.
        if identifier is None and getattr(message, "protocol", None) == rawworker.PROTOCOL:
            return {"open"}
        return {PROTOCOL_ERROR}
    return {PROTOCOL_ERROR}


async def fuzz(url: str, token: str, cases: list[tuple[str, str | None, list[Any]]]):
    """Run each (name, identifier to say hello as first or None, frames) on its own connection;
    {name: (close code, reason)}, "open" when the master kept the connection.

    An anchor connection with the same token stays open throughout: without it, a fuzz
    connection registering while the master re-checks credentials can be closed 4001 although
    its token is valid (a product race, see test_security.py), which is not what this tests."""
    anchor = await rawworker.open_connection(url, token)
    await rawworker.welcomed(anchor, "fuzz-anchor")

    async def keep_anchor() -> None:
        while True:
            await anchor.send(rawworker.HEARTBEAT)
            await asyncio.sleep(1.0)

    beating = asyncio.create_task(keep_anchor())
    try:
        return await _fuzz_cases(url, token, cases)
    finally:
        beating.cancel()
        await anchor.close()


async def _fuzz_cases(url: str, token: str, cases: list[tuple[str, str | None, list[Any]]]):
    results: dict[str, tuple[int | str | None, str]] = {}
    for name, identifier, frames in cases:
        # A refusal comes at once; a connection kept for a second was kept (the master waits
        # three heartbeats, 15 s, before it gives up on a silent worker).
        wait = 1.0 if expected_close(name, identifier, frames) == {"open"} else 10.0
        connection = await rawworker.open_connection(url, token)
        try:
            if identifier is not None:
                await rawworker.welcomed(connection, identifier)
            try:
                for frame in frames:
                    if isinstance(frame, tuple):  # (bytes, "text"): a text frame of raw bytes
                        await connection.send(frame[0], text=True)
                    else:
                        await connection.send(frame)
            except ConnectionClosed as exc:
                # Closed while still sending: a frame too big is refused from its header
                # (nothing compresses it on the way), before the rest of it arrives.
                results[name] = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
                continue
            try:
                results[name] = await rawworker.closed_with(connection, timeout=wait)
            except TimeoutError:
                results[name] = ("open", "")
        finally:
            await connection.close()
    return results


def test_fuzzed_worker_frames_close_that_connection_and_touch_nothing_else(
    cluster: ProofCluster, ledger: Ledger, figure
) -> None:
    cluster.start(settings={"ORCHESTRA_HEARTBEAT": "5"})
    real = cluster.start_agent("w1")
    fuzzer = cluster.create_user("fuzzer", ["worker"])
    cluster.api.put_job("j", [proof_job(ledger.journal, 60, 0.1)])
    run = ledger.trigger(cluster.api, "j", Expect(lines=60, statuses=frozenset({"succeeded"})))
    victim = run["identifier"]
    wait_until(lambda: b"line 2\n" in cluster.api.log(run), 30, "the real worker's run going")
    worker_before = cluster.api.worker("w1")

    huge = json.dumps({"type": "heartbeat", "pad": "x" * (17 * 1024 * 1024)})
    nested = "[" * 100_000 + "]" * 100_000
    cases: list[tuple[str, str | None, list[Any]]] = [
        ("invalid JSON first", None, ["{not json"]),
        ("not an object", None, ["[1, 2, 3]"]),
        ("deeply nested", None, [nested]),
        ("unknown type", None, [json.dumps({"type": "bogus"})]),
        ("wrong types in hello", None, [rawworker.hello("fuzz-a", executors="two")]),
        ("other protocol", None, [rawworker.hello("fuzz-a", protocol=99)]),
        ("extra field", None, [rawworker.hello("fuzz-a", admin=True)]),
        ("report before hello", None, [report(victim)]),
        ("another user's worker identifier", None, [rawworker.hello("w1")]),
        ("report for another worker's run", "fuzz-b", [report(victim)]),
        ("second hello", "fuzz-c", [rawworker.hello("fuzz-c")]),
        ("invalid JSON after hello", "fuzz-e", ['{"type": "heartbeat"']),
        ("invalid UTF-8 text frame", "fuzz-f", [(b'{"type": "\xff\xfe"}', "text")]),
        ("negative sequence", "fuzz-g", [report(victim, sequence=-1)]),
        ("huge frame", "fuzz-h", [huge]),
    ]
    rng = random.Random(11)
    for index, (after_hello, frame) in enumerate(mutations(rng, choose(30, 600))):
        cases.append(
            (f"mutation {index}: {frame[:80]}", "fuzz-m" if after_hello else None, [frame])
        )
    results = asyncio.run(fuzz(cluster.url, fuzzer, cases))

    problems = []
    for name, identifier, frames in cases:
        code, reason = results[name]
        expected = expected_close(name, identifier, frames)
        if code not in expected:
            problems.append(
                f"{name}: closed {code} {reason!r}, expected {sorted(map(str, expected))}"
            )
        elif code not in ("open", TOO_BIG, 1007) and not reason:
            problems.append(f"{name}: closed {code} without a reason")
    assert not problems, "\n".join(problems)
    codes: dict[str, int] = {}
    for code, _reason in results.values():
        codes[str(code)] = codes.get(str(code), 0) + 1
    figure("fuzz connections by close code", codes)

    # Nothing else was touched: the real worker kept its connection and its run succeeded whole.
    report_ = ledger.verify(cluster.api, deadline=60)
    done = report_.runs[victim]
    assert done["worker"] == "w1" and done["late_report"] is None, done
    assert real.running()
    assert "closed" not in real.log(), real.tail()
    worker_after = cluster.api.worker("w1")
    assert worker_after is not None and worker_before is not None
    for key in ("owner", "is_enabled", "executors", "properties", "display_name"):
        assert worker_after[key] == worker_before[key], key
    assert cluster.server is not None and cluster.server.running()


def test_binary_frames_close_the_connection_with_4000_and_a_reason(cluster: ProofCluster) -> None:
    cluster.start()
    fuzzer = cluster.create_user("fuzzer", ["worker"])
    cases: list[tuple[str, str | None, list[Any]]] = [
        ("binary first", None, [b"\x00\x01\x02"]),
        ("binary after hello", "fuzz-d", [b"\xff" * 10]),
    ]
    results = asyncio.run(fuzz(cluster.url, fuzzer, cases))
    for name, _identifier, _frames in cases:
        code, reason = results[name]
        assert code == PROTOCOL_ERROR and reason, f"{name}: closed {code} {reason!r}"


def test_oversized_http_bodies_get_413(cluster: ProofCluster) -> None:
    cluster.start()
    headers = {"Authorization": f"Bearer {cluster.admin_token}", "Content-Type": "application/json"}
    body = json.dumps({"display_name": "x" * (11 * 1024 * 1024)}).encode()
    with httpx.Client(base_url=cluster.url + API, headers=headers, timeout=60) as client:
        sized = client.put("/projects/big", content=body)
        assert sized.status_code == 413, sized.text[:200]
        assert sized.json()["detail"]

        def chunks():
            for start in range(0, len(body), 65536):
                yield body[start : start + 65536]

        chunked = client.put("/projects/big", content=chunks())  # no Content-Length
        assert chunked.status_code == 413, chunked.text[:200]
        assert client.get("/projects/big").status_code == 404
        # Just under the limit is fine.
        fine = json.dumps({"services": {"blob": "y" * (1024 * 1024)}}).encode()
        assert client.put("/projects/fine", content=fine).status_code in (200, 201)


def test_five_megabyte_line_without_newline_is_stored_whole_in_chunks(
    cluster: ProofCluster, ledger: Ledger
) -> None:
    size = 5_000_000
    cluster.start()
    cluster.start_agent("w1")
    line = """
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (os.environ["ORCHESTRA_RUN"] + " 0 0\\n").encode())
        sys.stdout.write("".join(chr(97 + n % 26) for n in range(int(sys.argv[2]))))
    """
    cluster.api.put_job("long-line", [py(line, str(ledger.journal), str(size))])
    run = ledger.trigger(
        cluster.api, "long-line", Expect(lines=0, statuses=frozenset({"succeeded"}))
    )
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    stored = cluster.api.log(run)
    expected = "".join(chr(97 + n % 26) for n in range(size)).encode()
    assert len(stored) == size and stored == expected
    assert cluster.api.log(run, offset=size - 10) == expected[-10:]
    path = cluster.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        (chunks,) = conn.execute(
            "SELECT count(*) FROM run_log WHERE run = ?", (run["identifier"],)
        ).fetchone()
    assert chunks >= 2, f"{chunks} chunks"
    ledger.verify(cluster.api, deadline=10)


ODD = {
    "nul": "a\x00b",
    "rtl override": "invoice\u202etxt.exe",
    "nfd": "Cafe\u0301",
    "dot dot slash": "../../etc/passwd",
    "script": "<script>alert(1)</script>",
    "zero width joiner": "a\u200db",
    "emoji": "\U0001f680",
    "template": "{{7*7}}",
    "long": "x" * 10_000,
}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_odd_identifiers_and_names_are_refused_or_stored_escaped_never_500(
    cluster: ProofCluster,
) -> None:
    cluster.start()
    api = cluster.api
    api.put_job("j", [py("print('ok')")])
    problems = []

    def check(what: str, response: httpx.Response, allowed: set[int]) -> None:
        if response.status_code >= 500 or response.status_code not in allowed:
            problems.append(f"{what}: {response.status_code} {response.text[:120]}")

    for label, value in ODD.items():
        # As identifiers: in the path and in the body, refused (never found, never stored).
        check(
            f"GET project {label}",
            api.request("GET", f"/projects/{quote(value, safe='')}"),
            {404, 422},
        )
        check(
            f"PUT project {label}",
            api.request("PUT", f"/projects/{quote(value, safe='')}", json={}),
            {400, 404, 405, 422},
        )
        for path, body in (
            ("/projects", {"identifier": value}),
            ("/users", {"identifier": value}),
            (
                "/projects/p/jobs",
                {"identifier": value, "steps": [{"name": "s", "command": ["true"]}]},
            ),
            ("/projects/p/schedules", {"identifier": value, "job": "j", "expression": "@daily"}),
        ):
            check(f"POST {path} identifier {label}", api.request("POST", path, json=body), {422})
        # As free text: refused with 4xx, or stored (NFC) and shown back as stored.
        job = {"display_name": value, "description": value, "steps": [{"command": ["true"]}]}
        response = api.request("PUT", "/projects/p/jobs/shown", json=job)
        check(f"display name {label}", response, {200, 201, 422})
        if response.status_code in (200, 201):
            shown = api.request("GET", "/projects/p/jobs/shown", 200).json()
            for key in ("display_name", "description"):
                if shown[key] != unicodedata.normalize("NFC", value):
                    problems.append(f"{key} {label}: shown as {shown[key][:40]!r}")
        if label == "nul" and response.status_code != 422:
            problems.append(f"display name with NUL: {response.status_code}, expected 422")
        # As a run parameter value: one inert argument.
        check(
            f"trigger parameter {label}",
            api.request("POST", "/projects/p/jobs/j/trigger", json={"parameters": {"x": value}}),
            {400, 422},
        )
    assert not problems, "\n".join(problems)

    # The website escapes what it shows.
    api.put_project("p", display_name=ODD["script"])
    api.put_job("shown", [["true"]], display_name=ODD["script"], description=ODD["script"])
    cookies = {"orchestra_session": cluster.admin_token}
    for path in ("/projects/p", "/projects/p/jobs/shown"):
        page = httpx.get(f"{cluster.url}{path}", cookies=cookies, timeout=10)
        assert page.status_code == 200, (path, page.status_code)
        assert "<script>alert(1)</script>" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


CRON_REFUSED = [
    "",
    "* * * *",
    "* * * * * *",
    "*/0 * * * *",
    "60 * * * *",
    "* 24 * * *",
    "* * 32 * *",
    "* * * 13 *",
    "* * * * 8",
    "@reboot",
    "@sometimes",
    "0 0 30 2 *",  # never fires: there is no 30 February
    "0 0 31 4 *",  # never fires: April has 30 days
    "0 0 31 2,4,6,9,11 *",
    "x" * 10_000,
    "* * * * *\x00",
]


def test_invalid_and_never_firing_cron_expressions_are_refused_with_422(
    cluster: ProofCluster,
) -> None:
    cluster.start()
    cluster.api.put_job("j", [py("print('ok')")])
    problems = []
    for number, expression in enumerate(CRON_REFUSED):
        body = {"identifier": f"s{number}", "job": "j", "expression": expression}
        response = cluster.api.request("POST", "/projects/p/schedules", json=body)
        if response.status_code != 422 or not response.json().get("detail"):
            problems.append(f"{expression[:40]!r}: {response.status_code} {response.text[:120]}")
    assert not problems, "\n".join(problems)
    body = {"identifier": "fine", "job": "j", "expression": "0 3 * * *"}
    assert cluster.api.request("POST", "/projects/p/schedules", json=body).status_code == 201
    assert [
        s["identifier"]
        for s in cluster.api.request("GET", "/projects/p/schedules", 200).json()["items"]
    ] == ["fine"]


def test_cron_with_non_ascii_digits_is_refused_with_422(cluster: ProofCluster) -> None:
    cluster.start()
    cluster.api.put_job("j", [py("print('ok')")])
    answers = {}
    for number, expression in enumerate(["\u00b2 * * * *", "*/\u00b2 * * * *", "\u0661 * * * *"]):
        body = {"identifier": f"s{number}", "job": "j", "expression": expression}
        try:
            response = cluster.api.request("POST", "/projects/p/schedules", json=body)
            answers[expression] = str(response.status_code)
        except httpx.HTTPError as exc:  # the server dropped the connection
            answers[expression] = type(exc).__name__
    assert set(answers.values()) == {"422"}, answers
