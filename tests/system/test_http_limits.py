"""The HTTP server against slow and lying clients, on real sockets: a connection that does not
finish its request's headers within ORCHESTRA_HEADER_TIMEOUT is closed (silent, half a request
line, or one byte now and then), while workers' WebSocket connections live on; X-Forwarded-For
is believed only from the proxies ORCHESTRA_TRUSTED_PROXIES names, not from 127.0.0.1."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import API

HEADER_TIMEOUT = 1.0
CLOSE_DEADLINE = HEADER_TIMEOUT + 4.0  # closed by then, whatever the machine's load


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def seconds_until_closed(sock: socket.socket, drip: bytes = b"") -> float:
    """Send `drip` one byte every 0.2 s (nothing if empty) until the server closes the
    connection, and return how long that took (failing past CLOSE_DEADLINE)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - started < CLOSE_DEADLINE:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if drip:
            try:
                sock.send(drip[sent % len(drip) : sent % len(drip) + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            sent += 1
    raise AssertionError(f"the server kept the connection open {CLOSE_DEADLINE}s ({sent} bytes)")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_slow_or_silent_clients_are_closed_and_workers_live_on(cluster: Cluster) -> None:
    cluster.start(settings={"ORCHESTRA_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})
    cluster.start_worker("w1")
    silent = connect(cluster.url)
    half = connect(cluster.url)
    half.sendall(b"GET /api/v1/hea")
    dripping = connect(cluster.url)
    dripping.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
    try:
        assert HEADER_TIMEOUT * 0.8 <= seconds_until_closed(silent) < CLOSE_DEADLINE
        assert seconds_until_closed(half) < CLOSE_DEADLINE
        assert (
            seconds_until_closed(dripping, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n") < CLOSE_DEADLINE
        )
    finally:
        for sock in (silent, half, dripping):
            sock.close()
    # A whole request is answered, and a kept-alive connection serves a second one.
    with connect(cluster.url) as sock:
        for _ in range(2):
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert whole_response(sock).startswith(b"HTTP/1.1 200")
    # The worker's WebSocket, connected for longer than the deadline, still takes runs.
    cluster.api.put_job("j", [py("print('ran')")])
    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    assert cluster.api.worker("w1")["is_active"] is True  # type: ignore[index]


def last_address(cluster: Cluster) -> str | None:
    events = cluster.api.request("GET", "/audit").json()["items"]
    return events[0]["address"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_x_forwarded_for_from_localhost_is_not_believed(cluster: Cluster) -> None:
    """Before: uvicorn believed X-Forwarded-For from 127.0.0.1, so a run's step on the server's
    machine chose the address the audit log recorded and the login throttle counted."""
    cluster.start()
    cluster.api.request(
        "PATCH",
        "/projects/p",
        200,
        json={"display_name": "P"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert last_address(cluster) == "127.0.0.1"
    cluster.api.request(
        "POST", "/users", 201, json={"identifier": "alice", "password": "first password 1"}
    )
    login = f"{cluster.url}{API}/me/login"
    for guess in range(10):  # the limit for one user from one address
        forged = {"X-Forwarded-For": f"198.51.100.{guess}"}
        wrong = httpx.post(login, json={"user": "alice", "password": f"g{guess}"}, headers=forged)
        assert wrong.status_code == 401
    right = httpx.post(login, json={"user": "alice", "password": "first password 1"})
    assert right.status_code == 429, right.text


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_x_forwarded_for_is_believed_from_a_configured_proxy(cluster: Cluster) -> None:
    cluster.start(settings={"ORCHESTRA_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    cluster.api.request(
        "PATCH",
        "/projects/p",
        200,
        json={"display_name": "P"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert last_address(cluster) == "203.0.113.9"


def whole_response(sock: socket.socket) -> bytes:
    """One HTTP answer, read whole: its head and its body may come in separate segments."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body
