"""Webhooks in through real `orchestra server` processes: signed deliveries of each scheme start
runs that a real worker runs with the parameters taken from the body; a wrong or missing
signature and a stale timestamp start nothing; a replay names the first run; and on PostgreSQL,
the same delivery sent at once to two API servers starts one run."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import API, free_port
from tests.support.webhooks import SECRET, STANDARD_SECRET, body_of, signed, standard_headers

PRINT = "import sys; print('ref=' + sys.argv[1])"
PUSH = {"ref": "refs/heads/main", "repository": {"full_name": "o/r"}}


def secret_of(scheme: str) -> str:
    return STANDARD_SECRET if scheme == "standard" else SECRET


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def test_signed_deliveries_start_runs_and_bad_ones_start_nothing(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    api = cluster.api
    for scheme in ("github", "gitlab", "standard"):
        hook = {
            "secret": secret_of(scheme),
            "signature": scheme,
            "parameters": {"ref": "ref"},
            "filter": {"repository.full_name": "^o/r$"},
        }
        job = api.put_job(
            scheme,
            [py(PRINT, "{parameters[ref]}")],
            parameters=[{"key": "ref", "default": "none"}],
            webhook=hook,
        )
        assert job["webhook"]["secret"] == "***"
    body = body_of(PUSH)
    for scheme in ("github", "gitlab", "standard"):
        url = f"{cluster.url}{API}/webhooks/p/jobs/{scheme}"
        wrong = signed(
            scheme, "whsec_QUJDREVGR0hJSktMTU5PUA==" if scheme == "standard" else "x" * 20, body
        )
        assert post(url, body, wrong).status_code == 401
        assert post(url, body, {"Content-Type": "application/json"}).status_code == 401
        headers = signed(scheme, secret_of(scheme), body, delivery=f"{scheme}-1")
        started = post(url, body, headers)
        assert started.status_code == 201, started.text
        run = started.json()["run"]
        replayed = post(url, body, headers)
        assert replayed.status_code == 200 and replayed.json() == {"run": run}
        other = body_of({**PUSH, "repository": {"full_name": "x/y"}})
        filtered = post(url, other, signed(scheme, secret_of(scheme), other))
        assert filtered.status_code == 202
        done = api.wait_for_status(run, "succeeded", timeout=60)
        assert done["source"]["delivery"] == f"{scheme}-1"
        assert b"ref=refs/heads/main" in api.log(run)
    stale = standard_headers(STANDARD_SECRET, body, timestamp=time.time() - 600)
    assert post(f"{cluster.url}{API}/webhooks/p/jobs/standard", body, stale).status_code == 401
    assert len(api.runs()) == 3
    audit = api.request("GET", "/audit", 200, params={"actor": "webhook"}).json()["items"]
    assert len(audit) == 3


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_one_delivery_sent_to_two_api_servers_at_once_starts_one_run(cluster: Cluster) -> None:
    _api1, first = cluster.start_role("api-1", "api", port=free_port())
    _api2, second = cluster.start_role("api-2", "api", port=free_port())
    api = cluster.use(first)
    api.put_project("p")
    hook = {"secret": STANDARD_SECRET, "signature": "standard"}
    api.put_job("j", [["true"]], webhook=hook)
    body = body_of(PUSH)
    headers = standard_headers(STANDARD_SECRET, body, delivery="msg_once")
    answers: list[httpx.Response] = []
    gate = threading.Barrier(16)

    def send(index: int) -> None:
        gate.wait()
        server = first if index % 2 else second
        answers.append(post(f"{server}{API}/webhooks/p/jobs/j", body, headers))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 15 + [201]
    assert len({a.json()["run"] for a in answers}) == 1
    assert len(api.runs()) == 1
