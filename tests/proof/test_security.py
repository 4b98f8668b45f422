"""Nobody gets in where they do not belong: revoked tokens and disabled users refused by every API
server at once and their worker connections closed; login brute force limited, with known and
unknown users answering alike; cross-site WebSocket and forged form posts refused; parameters
never reach a shell; no path leads outside a run's own output.

The authorization matrix itself (every route against every role) is tests/integration/
test_authorization.py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import re
import socket
import statistics
import time
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.proof import rawworker
from tests.proof.cluster import ProofCluster
from tests.proof.invariants import Expect, Ledger
from tests.support.jobs import py
from tests.support.processes import API, PYTHON
from tests.support.waiting import wait_until

REFUSAL_LIMIT = 5.0


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_revoked_token_and_disabled_user_are_refused_by_every_api_server_within_5s(
    cluster: ProofCluster, figure
) -> None:
    _a, a1 = cluster.start_role("api-1", "api")
    _b, a2 = cluster.start_role("api-2", "api")
    cluster.use(a1)
    revoked_id, revoked = cluster.create_token("admin")
    cluster.create_user("someone", ["viewer"])
    _disabled_id, disabled = cluster.create_token("someone")
    servers = (a1, a2)

    def answers(token: str) -> list[int]:
        headers = {"Authorization": f"Bearer {token}"}
        return [httpx.get(f"{u}{API}/me", headers=headers, timeout=10).status_code for u in servers]

    assert answers(revoked) == [200, 200] and answers(disabled) == [200, 200]
    cluster.api.request("DELETE", f"/users/admin/tokens/{revoked_id}", 204)
    cluster.api.request("PATCH", "/users/someone", 200, json={"is_enabled": False})
    changed = time.monotonic()
    wait_until(lambda: answers(revoked) == [401, 401], REFUSAL_LIMIT, "the revoked token refused")
    wait_until(lambda: answers(disabled) == [401, 401], REFUSAL_LIMIT, "the disabled user refused")
    figure("revocation to refusal on both API servers", round(time.monotonic() - changed, 3), "s")
    # Basic authentication with the same secrets is refused too.
    for user, secret in (("admin", revoked), ("someone", disabled)):
        for url in servers:
            response = httpx.get(f"{url}{API}/me", auth=(user, secret), timeout=10)
            assert response.status_code == 401, (user, url, response.status_code)


def test_worker_whose_token_is_revoked_or_user_disabled_is_closed_4001_and_exits_3(
    cluster: ProofCluster, figure
) -> None:
    cluster.start(settings={"ORCHESTRA_HEARTBEAT": "1"})
    token = cluster.create_user("agent-r", ["worker"])
    token_id = cluster.api.request("GET", "/users/agent-r/tokens", 200).json()["items"][0][
        "identifier"
    ]
    revoked = cluster.start_agent("wr", user="agent-r", token=token)
    disabled_token = cluster.create_user("agent-d", ["worker"])
    disabled = cluster.start_agent("wd", user="agent-d", token=disabled_token)

    cluster.api.request("DELETE", f"/users/agent-r/tokens/{token_id}", 204)
    cluster.api.request("PATCH", "/users/agent-d", 200, json={"is_enabled": False})
    changed = time.monotonic()
    for process in (revoked, disabled):
        wait_until(lambda p=process: not p.running(), 15, f"{process.name} to exit")
        assert process.popen.returncode == 3, (process.name, process.popen.returncode)
        assert "closed: 4001" in process.log(), process.tail()
    figure("credentials changed to worker exited", round(time.monotonic() - changed, 2), "s")

    # Nor can it come back: the handshake is refused.
    async def handshake() -> str:
        try:
            connection = await rawworker.open_connection(cluster.url, token)
        except InvalidStatus as exc:
            return f"refused {exc.response.status_code}"
        await connection.close()
        return "accepted"

    assert asyncio.run(handshake()) == "refused 403"


def test_worker_started_with_a_revoked_token_exits_3(cluster: ProofCluster) -> None:
    cluster.start()
    token = cluster.create_user("agent-r", ["worker"])
    token_id = cluster.api.request("GET", "/users/agent-r/tokens", 200).json()["items"][0][
        "identifier"
    ]
    cluster.api.request("DELETE", f"/users/agent-r/tokens/{token_id}", 204)
    worker = cluster.start_agent("wr", user="agent-r", token=token, wait=False)
    wait_until(lambda: not worker.running(), 10, "the worker with a revoked token to exit")
    assert worker.popen.returncode == 3


def test_workers_connecting_while_credentials_change_are_never_closed_as_revoked(
    cluster: ProofCluster, figure
) -> None:
    """100 lightweight workers, each with a token of its own, connect at once, three times,
    while an administrator revokes unrelated tokens (each revocation makes every master
    re-check its connections): every one is welcomed and kept."""
    cluster.start(settings={"ORCHESTRA_HEARTBEAT": "5"})
    tokens = [cluster.create_token("agent")[1] for _ in range(100)]
    unrelated = [cluster.create_token("admin")[0] for _ in range(9)]
    revoker = cluster.client()

    async def one(number: int) -> str:
        connection = await rawworker.open_connection(cluster.url, tokens[number])
        try:
            await rawworker.welcomed(connection, f"own-token-{number}")
            code, reason = await rawworker.closed_with(connection, timeout=2.0)
            return f"closed {code} {reason}"
        except TimeoutError:
            return "kept"
        finally:
            await connection.close()

    async def revoke(identifiers: list[str]) -> None:
        for identifier in identifiers:
            await asyncio.sleep(0.1)
            await asyncio.to_thread(
                revoker.request, "DELETE", f"/users/admin/tokens/{identifier}", 204
            )

    async def waves() -> list[str]:
        outcomes: list[str] = []
        for wave in range(3):
            revoking = asyncio.create_task(revoke(unrelated[wave * 3 : wave * 3 + 3]))
            outcomes += await asyncio.gather(*(one(n) for n in range(len(tokens))))
            await revoking
        return outcomes

    outcomes = collections.Counter(asyncio.run(waves()))
    figure("connections closed 4001 with a valid token", outcomes.total() - outcomes["kept"])
    assert outcomes == {"kept": 3 * len(tokens)}, dict(outcomes)


def test_login_brute_force_is_limited_and_known_and_unknown_users_answer_alike(
    cluster: ProofCluster, figure
) -> None:
    cluster.start()
    password = "correct horse battery staple 42"
    cluster.create_user("victim", ["viewer"], password=password)
    login = f"{cluster.url}{API}/me/login"
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    answers: dict[str, set[tuple[int, str]]] = {"known": set(), "unknown": set()}
    with httpx.Client(timeout=30) as client:
        for attempt in range(10):  # interleaved, so that load drifts affect both alike
            for kind, user in (("known", "victim"), ("unknown", "nobody-here")):
                started = time.perf_counter()
                response = client.post(login, json={"user": user, "password": f"guess {attempt}"})
                timings[kind].append(time.perf_counter() - started)
                answers[kind].add((response.status_code, response.text))
        assert answers["known"] == answers["unknown"], answers
        assert [status for status, _body in answers["known"]] == [401], answers
        # Past the limit: 429, for the right password too, and alike for both.
        limited = {
            kind: client.post(login, json={"user": user, "password": password})
            for kind, user in (("known", "victim"), ("unknown", "nobody-here"))
        }
        for response in limited.values():
            assert response.status_code == 429, response.text
            assert response.headers.get("retry-after")
        assert {r.json()["detail"].split(";")[0] for r in limited.values()} == {
            "too many failed logins"
        }
        # Another user is not locked out by the attack on this one.
        cluster.create_user("bystander", ["viewer"], password=password)
        assert (
            client.post(login, json={"user": "bystander", "password": password}).status_code == 200
        )
    known, unknown = statistics.median(timings["known"]), statistics.median(timings["unknown"])
    figure("login median, known user", round(known * 1000, 1), "ms")
    figure("login median, unknown user", round(unknown * 1000, 1), "ms")
    # Loose: the same password hashing either way (a shortcut for unknown users would be ~10x).
    assert 0.5 < known / unknown < 2.0, (known, unknown)


def test_cross_site_websocket_to_the_worker_endpoint_is_refused(cluster: ProofCluster) -> None:
    cluster.start()

    async def attempt(origin: str | None) -> str:
        try:
            connection = await rawworker.open_connection(
                cluster.url, cluster.worker_token, origin=origin
            )
        except InvalidStatus as exc:
            return f"refused {exc.response.status_code}"
        try:
            await connection.send(rawworker.hello(f"origin-{uuid.uuid4().hex[:6]}"))
            message = await asyncio.wait_for(connection.recv(), 10)
            return str(json.loads(message)["type"])
        except Exception as exc:
            return f"closed {getattr(getattr(exc, 'rcvd', None), 'code', exc)}"
        finally:
            await connection.close()

    host = cluster.url.removeprefix("http://")
    assert asyncio.run(attempt("http://evil.example")) in ("refused 403", "closed 4003")
    assert asyncio.run(attempt(f"http://{host}.evil.example")) in ("refused 403", "closed 4003")
    assert asyncio.run(attempt(None)) == "welcome"
    assert asyncio.run(attempt(f"http://{host}")) == "welcome"


def test_forged_form_post_to_the_website_is_refused(cluster: ProofCluster) -> None:
    """A form posted from another site with the victim's session cookie: no CSRF token, a made
    up one, or one of another session; each 403 and nothing triggered. The real form works."""
    cluster.start()
    cluster.api.put_job("j", [py("print('ran')")])
    _id, other_session = cluster.create_token("admin")
    action = f"{cluster.url}/projects/p/jobs/j/trigger"
    cookies = {"orchestra_session": cluster.admin_token}
    foreign = hmac.new(other_session.encode(), b"orchestra-csrf", hashlib.sha256).hexdigest()
    with httpx.Client(cookies=cookies, timeout=10) as client:
        for forged in ({}, {"csrf_token": "0" * 64}, {"csrf_token": foreign}):
            response = client.post(
                action,
                data=forged,
                headers={"Origin": "http://evil.example", "Referer": "http://evil.example/x"},
            )
            assert response.status_code == 403, (forged, response.status_code)
        assert cluster.api.runs() == []
        page = client.get(f"{cluster.url}/projects/p/jobs/j")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        genuine = client.post(action, data={"csrf_token": token.group(1)})
        assert genuine.status_code in (200, 303), genuine.status_code
    assert len(cluster.api.runs()) == 1


def test_shell_syntax_in_parameters_never_runs_anything(
    cluster: ProofCluster, ledger: Ledger, tmp_path: Path
) -> None:
    cluster.start()
    cluster.start_agent("w1")
    marker = tmp_path / "pwned"
    echo = "import json, os, sys\nprint(json.dumps(sys.argv[1:]))"
    steps = [
        {"name": "argv", "command": [PYTHON, "-c", echo, "{parameters[p]}", "--x={parameters[p]}"]}
    ]
    job = {"parameters": [{"key": "p"}], "steps": steps}
    cluster.api.request("PUT", "/projects/p/jobs/echo", json=job)
    values = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        f"| touch {marker}",
        f"&& touch {marker} #",
        f"\ntouch {marker}\n",
        f"--output={marker}",
        "{parameters[p]}",
        "%(p)s {0} ${p}",
    ]
    runs = []
    for value in values:
        run = cluster.api.trigger("echo", parameters={"p": value})
        ledger.add(run, Expect(lines=0, journaled=False, statuses=frozenset({"succeeded"})))
        runs.append((run, value))
    for run, value in runs:
        cluster.api.wait_for_status(run, "succeeded", timeout=60)
        assert json.loads(cluster.api.log(run)) == [value, f"--x={value}"], value
    assert not marker.exists()
    ledger.verify(cluster.api, deadline=10)


def test_workspace_traversal_is_refused_at_job_creation(cluster: ProofCluster) -> None:
    cluster.start()
    for workspace in ("../x", "..", "/etc", "a/../../b", "a/..", "a\\..\\b", "a\x00b"):
        job = {"workspace": workspace, "steps": [{"command": ["true"]}]}
        response = cluster.api.request("PUT", "/projects/p/jobs/bad", json=job)
        assert response.status_code in (400, 422), (workspace, response.status_code)
    assert cluster.api.request("GET", "/projects/p/jobs/bad").status_code == 404
    fine = {"workspace": "team/build", "steps": [{"command": ["true"]}]}
    assert cluster.api.request("PUT", "/projects/p/jobs/good", json=fine).status_code in (200, 201)


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET `target` sent as is (no client-side normalisation of `..` or escapes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def test_symlinks_and_traversal_never_serve_a_file_outside_the_run(
    cluster: ProofCluster, ledger: Ledger
) -> None:
    cluster.start()
    cluster.start_agent("w1")
    link = """
        import os
        os.symlink("/etc", "link")
        os.symlink("/etc/passwd", "passwd")
        print("made links", flush=True)
    """
    cluster.api.put_job("links", [py(link)])
    run = cluster.api.trigger("links")
    ledger.add(run, Expect(lines=0, journaled=False, statuses=frozenset({"succeeded"})))
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    assert cluster.api.log(run) == b"made links\n"
    assert cluster.api.log(run, step=0) == b"made links\n"
    secret = Path("/etc/passwd").read_bytes()[:20]
    base = f"/api/v1/projects/p/runs/{run['identifier']}"
    targets = [
        f"{base}/log",
        f"{base}/log?offset=0",
        f"{base}/steps/1/log",
        f"{base}/steps/..%2f..%2f..%2fetc%2fpasswd/log",
        f"{base}/../../../../etc/passwd",
        "/api/v1/projects/p/runs/..%2f..%2f..%2fetc%2fpasswd/log",
        "/static/../../etc/passwd",
        "/static/../../../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/..%5c..%5c..%5c..%5cetc%5cpasswd",
        "/static/%252e%252e/%252e%252e/etc/passwd",
        "/static//etc/passwd",
        "/static/....//....//....//etc/passwd",
        "/static/link/passwd",
    ]
    token = cluster.admin_token
    for target in targets:
        status, body = raw_get(cluster.url, target)
        assert secret not in body, f"{target} served /etc/passwd"
        if target.startswith("/static/"):
            assert status == 404, (target, status)
    # The API's own log routes, authenticated, still serve only the run's output.
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=cluster.url, headers=headers, timeout=10) as client:
        for target in targets[:4]:
            response = client.get(target)
            assert secret not in response.content, target
            assert response.status_code in (200, 404, 422), (target, response.status_code)
            if response.status_code == 200:
                assert response.content in (b"made links\n", b""), (target, response.content)
    ledger.verify(cluster.api, deadline=10)
