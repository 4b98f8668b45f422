"""Notifications out with real processes: an event refused by a real receiver, the server
killed -9 before the retry, then accepted once with the same webhook-id and a valid signature;
run.fixed once after a failure, never after a success; two masters on PostgreSQL delivering
each event once."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from urllib.parse import urlsplit

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import run_orchestra
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

SECRET = "a plain secret, used as its UTF-8 bytes"
EXIT = "import sys; sys.exit(int(sys.argv[1]))"
SETTINGS = {"ORCHESTRA_NOTIFY_RETRY_DELAY": "2"}
EVENTS = ["run.succeeded", "run.failed", "run.fixed"]
URL_X = "https://hooks.example.test/x"


def notification(receiver: Receiver, **fields: object) -> dict[str, object]:
    return {"identifier": "hook", "events": EVENTS, "url": receiver.url, **fields}


def test_event_arrives_once_accepted_across_a_server_killed_between_attempts(
    cluster: Cluster,
) -> None:
    with Receiver(statuses=[500]) as receiver:
        cluster.start(settings=SETTINGS)
        port = urlsplit(cluster.url).port
        assert port is not None
        cluster.start_worker("w1")
        cluster.api.put_job("j", [py(EXIT, "{parameters[code]}")], parameters=[{"key": "code"}])
        body = notification(receiver, secret=SECRET)
        cluster.api.request("POST", "/projects/p/notifications", 201, json=body)

        failed = cluster.api.trigger("j", parameters={"code": "1"})
        cluster.api.wait_for_status(failed, "failed")
        deliveries = "/projects/p/notifications/hook/deliveries"

        def refused_once() -> bool:
            items = cluster.api.request("GET", deliveries, 200).json()["items"]
            return bool(items) and items[0]["attempts"] == 1

        wait_until(refused_once, 30, "the first attempt, refused and recorded")
        assert [r.status for r in receiver.all()] == [500]
        assert cluster.server is not None
        cluster.server.kill()  # -9, before the retry
        cluster.start_server(port=port, settings=SETTINGS)
        cluster.wait_for_workers(["w1"])
        wait_until(lambda: receiver.accepted(), 60, "the retry, accepted")

        fixed = cluster.api.trigger("j", parameters={"code": "0"})
        cluster.api.wait_for_status(fixed, "succeeded")
        again = cluster.api.trigger("j", parameters={"code": "0"})
        cluster.api.wait_for_status(again, "succeeded")
        wait_until(lambda: len(receiver.accepted()) >= 4, 60, "four events accepted")

        got = receiver.accepted()
        assert [(r.json()["type"], r.json()["data"]["identifier"]) for r in got] == [
            ("run.failed", failed["identifier"]),
            ("run.succeeded", fixed["identifier"]),
            ("run.fixed", fixed["identifier"]),  # after the failure, once
            ("run.succeeded", again["identifier"]),  # no run.fixed after a success
        ]
        first_attempt = receiver.all()[0]
        assert first_attempt.status == 500
        assert first_attempt.headers["webhook-id"] == got[0].headers["webhook-id"]
        assert len({r.headers["webhook-id"] for r in got}) == 4
        verifier = Webhook(SECRET.encode())
        for request in got:
            verifier.verify(request.body, request.headers)  # raises unless valid
        data = got[0].json()["data"]
        assert data["status"] == "failed" and data["steps"][0]["exit_code"] == 1

        shown = cluster.api.request("GET", deliveries, 200)
        deliveries = {d["message"]: d for d in shown.json()["items"]}
        first = deliveries[got[0].headers["webhook-id"]]
        assert first["status"] == "delivered" and first["attempts"] == 2
        assert first["last_status_code"] == 200
        assert len(receiver.accepted()) == 4  # and nothing more


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_two_masters_deliver_each_event_once(cluster: Cluster) -> None:
    with Receiver() as receiver:
        settings = {**SETTINGS, "ORCHESTRA_HEARTBEAT": "1"}
        _m1, master1 = cluster.start_role("master-1", "master", settings=settings)
        _m2, master2 = cluster.start_role("master-2", "master", settings=settings)
        _api, api_url = cluster.start_role("api-1", "api", settings=settings)
        api = cluster.use(api_url)
        api.put_project("p")
        api.put_job("j", [py(EXIT, "{parameters[code]}")], parameters=[{"key": "code"}])
        api.request(
            "POST", "/projects/p/notifications", 201, json=notification(receiver, secret=SECRET)
        )
        cluster.start_worker("w1", executors=4, urls=[master1, master2])
        cluster.start_worker("w2", executors=4, urls=[master2, master1])
        runs = [api.trigger("j", parameters={"code": str(n % 2)}) for n in range(12)]
        ended = [api.wait_for_status(r, ("succeeded", "failed"), timeout=60) for r in runs]
        ended.sort(key=lambda r: (r["completion_date"], r["identifier"]))
        pairs = itertools.pairwise(r["status"] for r in ended)
        fixes = sum(1 for pair in pairs if pair == ("failed", "succeeded"))
        expected = 12 + fixes  # one event per run, and run.fixed for each success after a failure

        def arrived() -> bool:
            return len(receiver.accepted()) >= expected

        wait_until(arrived, 60, f"{expected} events")
        got = receiver.accepted()
        ids = Counter(r.headers["webhook-id"] for r in got)
        assert set(ids.values()) == {1}, ids
        kinds = Counter((r.json()["type"], r.json()["data"]["identifier"]) for r in got)
        assert set(kinds.values()) == {1}
        assert sum(1 for kind, _ in kinds if kind != "run.fixed") == 12


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_cli_manages_notifications_secret_from_stdin(cluster: Cluster) -> None:
    cluster.start()
    env = cluster.client_env()
    base = ["notification"]
    create = [*base, "create", "p", "ops", "-e", "run.failed", "-e", "run.fixed"]
    created = run_orchestra(
        [*create, "--url", URL_X, "--secret-stdin"],
        env,
        stdin=SECRET + "\n",
    )
    assert created.returncode == 0, created.stderr
    shown = run_orchestra([*base, "show", "p", "ops", "-o", "json"], env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["secret"] == "***" and SECRET not in shown.stdout
    updated = run_orchestra([*base, "update", "p", "ops", "--format", "slack"], env)
    assert updated.returncode == 0, updated.stderr
    listed = run_orchestra([*base, "list", "p", "-o", "json"], env)
    assert [n["format"] for n in json.loads(listed.stdout)] == ["slack"]
    empty = run_orchestra([*base, "deliveries", "p", "ops", "-o", "json"], env)
    assert empty.returncode == 0 and json.loads(empty.stdout) == []
    bad = run_orchestra([*base, "create", "p", "x", "-e", "run.failed", "--url", "ftp://x"], env)
    assert bad.returncode == 1 and "422" in bad.stderr and "Traceback" not in bad.stderr
    assert run_orchestra([*base, "disable", "p", "ops"], env).returncode == 0
    assert run_orchestra([*base, "delete", "p", "ops"], env).returncode == 0
    again = run_orchestra([*base, "delete", "p", "ops"], env)
    assert again.returncode == 1 and "404" in again.stderr
