"""An outside attack on the features of session 11 (artifacts, events, logs), each hole found
kept shut by a test here that failed before its fix:

- a log line with an SGR escape of thousands of digits made the run's page (and its
  `log/lines`) answer 500 for every reader: int() refuses more than 4300 digits;
- `log/lines?style=²` (a digit to str.isdigit, not to int()) answered 500;
- a `Range:` header of thousands of digits made an artifact's download answer 500;
- a JUnit report of many elements that are not test cases (`<x/>` a million times) grew the
  worker's memory about twenty times the report's size (256 MiB reports are read).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from orchestra.domain import ansi
from orchestra.domain.notifications import is_private_address
from orchestra.worker.junit import parse_report
from tests.proof.cluster import ProofCluster
from tests.support.jobs import py
from tests.support.processes import API
from tests.support.receiver import Receiver
from tests.support.sse import EventStream
from tests.support.waiting import wait_until
from tests.support.webhooks import SECRET, body_of, github_headers
from tests.system.test_artifacts_server import running_run

HUGE = "9" * 5000  # digits: past int()'s limit of 4300


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_a_log_escape_of_thousands_of_digits_leaves_the_run_page_readable(
    cluster: ProofCluster,
) -> None:
    cluster.start()
    cluster.start_worker("w1")
    script = f"""
        import sys
        sys.stdout.write("before\\x1b[{HUGE}mafter <script>alert(1)</script>\\n")
        sys.stdout.write("\\x1b[31mred\\x1b[0m \\x1b]0;title\\x07<img src=x onerror=alert(1)>\\n")
    """
    cluster.api.put_job("ansi", [py(script)])
    run = cluster.api.trigger("ansi")
    cluster.api.wait_for_status(run, "succeeded", 60)
    identifier = run["identifier"]
    site = httpx.Client(
        base_url=cluster.url, headers={"Authorization": f"Bearer {cluster.admin_token}"}
    )
    with site:
        page = site.get(f"/projects/p/runs/{identifier}")
        assert page.status_code == 200, page.text[:300]
        assert "beforeafter &lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
        assert '<span class="a-fg-red">red</span>' in page.text
        # What held: a search is text (not a pattern), and what it marks stays escaped.
        for search in ("<script>", "((a+)+$", "\x00", "ß", "red\x1b[0m", "x" * 200):
            found = site.get(f"/projects/p/runs/{identifier}", params={"search": search})
            assert found.status_code == 200, (search, found.text[:300])
            assert "<script>alert(1)" not in found.text
        marked = site.get(f"/projects/p/runs/{identifier}", params={"search": "<script>"})
        assert "<mark>&lt;script&gt;</mark>alert(1)" in marked.text
        for style in ("", "²", "1;²", HUGE[:64]):
            lines = site.get(
                f"/projects/p/runs/{identifier}/log/lines", params={"step": 0, "style": style}
            )
            assert lines.status_code == 200, (style, lines.text[:300])
            assert "&lt;script&gt;" in lines.json()["html"]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_an_artifact_range_of_thousands_of_digits_is_not_a_server_error(
    cluster: ProofCluster, tmp_path: Path
) -> None:
    cluster.start({"ORCHESTRA_ARTIFACTS_URL": f"file://{tmp_path / 'kept'}"})
    cluster.api.put_job("j", [["true"]], artifacts=[{"path": "**"}])
    run = asyncio.run(running_run(cluster))
    files = {
        "page.html": b"<script>alert(1)</script>",
        "image.svg": b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        "page.xhtml": b"<html xmlns='http://www.w3.org/1999/xhtml'><script>1</script></html>",
        "notes.txt": b"0123456789",
    }
    worker = httpx.Client(
        base_url=cluster.url + "/api/v1",
        headers={"Authorization": f"Bearer {cluster.worker_token}"},
    )
    with worker:
        for path, data in files.items():
            digest = hashlib.sha256(data).hexdigest()
            begun = worker.post(
                f"/artifact-uploads/{run}", json={"path": path, "size": len(data), "sha256": digest}
            )
            assert begun.status_code == 200, begun.text
            sent = worker.put(
                f"/artifact-uploads/{run}",
                params={"path": path, "offset": 0},
                content=data,
                headers={"X-Chunk-SHA256": digest},
            )
            assert sent.json().get("complete") is True, sent.text
    base = f"/projects/p/runs/{run}/artifacts"  # under the API client's /api/v1
    for header in (f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}", f"bytes={HUGE}-{HUGE}"):
        # A fresh connection each: a 500 used to cut the kept-alive one.
        answer = httpx.get(
            f"{cluster.url}/api/v1{base}/notes.txt",
            headers={"Authorization": f"Bearer {cluster.admin_token}", "Range": header},
        )
        assert answer.status_code in (200, 206, 416), (header[:20], answer.status_code)
        if answer.status_code == 200:
            assert answer.content == files["notes.txt"]
    ranged = cluster.api.request("GET", base + "/notes.txt", 206, headers={"Range": "bytes=2-4"})
    assert ranged.content == b"234" and ranged.headers["content-range"] == "bytes 2-4/10"

    # What held: script-carrying types go as text, as attachments, sandboxed; encoded `..`
    # finds nothing.
    for path in ("page.html", "image.svg", "page.xhtml"):
        got = cluster.api.request("GET", f"{base}/{path}", 200)
        assert got.headers["content-type"].startswith("text/plain")
        assert got.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in got.headers["content-security-policy"]
        assert got.headers["x-content-type-options"] == "nosniff"
    for trick in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd", "x/..%2fnotes.txt"):
        assert cluster.api.request("GET", f"{base}/{trick}", None).status_code == 404


def test_a_sgr_of_thousands_of_digits_is_ignored() -> None:
    parts, style = ansi.segments(f"a\x1b[{HUGE}mb\x1b[1;{HUGE};31mc")
    assert [text for _, text in parts] == ["ab", "c"]
    assert style.classes() == ("fg-red", "bold")
    assert ansi.decode("²;31").classes() == ("fg-red",)


def test_a_junit_report_of_other_elements_keeps_the_worker_memory_flat() -> None:
    flood = b"<x/>" * (1 << 20)  # 4 MiB
    report = (
        b"<testsuites>"
        + flood
        + b'<testsuite><testcase name="a">'
        + b"<failure/>" * (1 << 18)
        + b'</testcase><testcase name="b"><skipped/><system-out>'
        + flood
        + b'</system-out></testcase><testcase name="c"/></testsuite></testsuites>'
    )
    tracemalloc.start()
    try:
        counts = parse_report(io.BytesIO(report))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts == {"passed": 1, "failed": 1, "skipped": 1, "failures": ["a"]}
    assert peak < 8 << 20, f"{peak >> 20} MiB to read a {len(report) >> 20} MiB report"


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_notifications_reach_no_private_address_in_any_spelling(cluster: ProofCluster) -> None:
    cluster.start({"ORCHESTRA_NOTIFY_PRIVATE": "false"})
    with Receiver() as receiver:
        port = httpx.URL(receiver.url).port
        # Refused when saved: IPv4 addresses in IPv6 forms (NAT64, 6to4, IPv4-compatible).
        for host in ("[::127.0.0.1]", "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::1]", "[::1]"):
            body = {"identifier": "n", "events": ["run.started"], "url": f"http://{host}/"}
            refused = cluster.api.request("POST", "/projects/p/notifications", 422, json=body)
            assert "private" in refused.text
        # Host names are judged where they resolve, at each attempt: all refused.
        spellings = ("127.1", "0x7f000001", "2130706433", "0177.0.0.1", "0")
        for index, host in enumerate(spellings):
            body = {
                "identifier": f"n{index}",
                "events": ["run.started"],
                "url": f"http://{host}:{port}/hook",
            }
            cluster.api.request("POST", "/projects/p/notifications", 201, json=body)
        cluster.start_worker("w1")
        cluster.api.put_job("j", [["true"]])
        cluster.api.wait_for_status(cluster.api.trigger("j"), "succeeded", 60)

        def refused_everywhere() -> bool:
            for index in range(len(spellings)):
                path = f"/projects/p/notifications/n{index}/deliveries"
                shown = cluster.api.request("GET", path, 200).json()["items"]
                if not shown or "private address" not in (shown[0]["last_error"] or ""):
                    return False
            return True

        wait_until(refused_everywhere, 30, "every delivery refused as private")
        assert receiver.all() == []


def test_embedded_ipv4_addresses_are_judged_as_themselves() -> None:
    for address in ("::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808", "2002:a00:1::1"):
        assert is_private_address(address), address
    for address in ("64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111", "8.8.8.8"):
        assert not is_private_address(address), address


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_what_held_against_webhooks_and_the_event_stream(cluster: ProofCluster) -> None:
    cluster.start()
    api = cluster.api
    api.put_project("q")
    webhook = {"secret": SECRET, "signature": "github"}
    api.put_job("j", [["true"]], webhook=webhook)
    slow = {**webhook, "filter": {"a": "(a+)+$", "b": "(a|aa)+$"}}
    api.put_job("slow", [["true"]], webhook=slow)
    outsider = cluster.create_user("outsider", [])
    limited = api.request("POST", "/me/tokens", 201, json={"projects": ["q"]}).json()["secret"]
    streams = [
        EventStream(cluster.url, {"Authorization": f"Bearer {outsider}"}),
        EventStream(cluster.url, {"Authorization": f"Bearer {limited}"}),
    ]
    admin = EventStream(cluster.url, {"Authorization": f"Bearer {cluster.admin_token}"})
    in_url = EventStream(cluster.url, {}, {"token": cluster.admin_token})
    assert in_url.status == 401  # a token never goes in the URL
    other = EventStream(cluster.url, {"Authorization": f"Bearer {outsider}"}, {"project": "p"})
    assert other.status == 404
    try:
        url = f"{cluster.url}{API}/webhooks/p/jobs/j"
        body = body_of({"ref": "refs/heads/main"})
        signed = github_headers(SECRET, body, "delivery-1")
        first = httpx.post(url, content=body, headers=signed)
        assert first.status_code == 201
        again = httpx.post(url, content=body, headers=signed)
        assert (again.status_code, again.json()) == (200, first.json())
        refusals = {
            "no signature": ({"X-GitHub-Delivery": "d2"}, body),
            "another body": ({**signed, "X-GitHub-Delivery": "d3"}, body + b" "),
            "sha1": ({**signed, "X-Hub-Signature-256": "sha1=" + "0" * 40}, body),
            "empty": ({**signed, "X-Hub-Signature-256": "sha256="}, body),
            "gitlab's header": ({"X-Gitlab-Token": SECRET, "X-GitHub-Delivery": "d4"}, body),
        }
        for what, (headers, content) in refusals.items():
            answer = httpx.post(url, content=content, headers=headers)
            assert answer.status_code == 401, (what, answer.text)

        def too_big() -> Iterator[bytes]:
            yield from (b"x" * 65536 for _ in range(20))  # no Content-Length: read and cut

        assert httpx.post(url, content=too_big(), headers=signed).status_code == 413
        # The same delivery twenty times at once starts one run.
        raced = github_headers(SECRET, body, "delivery-race")
        with ThreadPoolExecutor(20) as pool:
            answers = list(
                pool.map(lambda _: httpx.post(url, content=body, headers=raced), range(20))
            )
        assert {a.status_code for a in answers} <= {200, 201}
        assert len({a.json()["run"] for a in answers}) == 1
        # A filter's catastrophic backtracking is cut short.
        evil = body_of({"a": "a" * 60_000 + "!", "b": "a" * 60_000 + "!"})
        started = time.monotonic()
        filtered = httpx.post(
            f"{cluster.url}{API}/webhooks/p/jobs/slow",
            content=evil,
            headers=github_headers(SECRET, evil, "delivery-slow"),
            timeout=30,
        )
        assert filtered.status_code == 202 and time.monotonic() - started < 5
        runs = {first.json()["run"], answers[0].json()["run"]}
        admin.wait_for(
            lambda events: runs <= {e.json.get("identifier") for e in events}, 30, "the runs"
        )
        for stream in streams:
            assert stream.status == 200 and stream.received() == []
    finally:
        for stream in (*streams, admin, in_url, other):
            stream.close()


class Trickler:
    """A receiver that answers a byte of header every half second, never ending its answer
    (until closed): each read comes within any read timeout."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            self.connected.set()
            with contextlib.suppress(OSError):
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self.stop.wait(0.5):
                    connection.sendall(b"X-Slow: y\r\n")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_a_receiver_that_never_ends_its_answer_holds_no_other_notification(
    cluster: ProofCluster,
) -> None:
    cluster.start({"ORCHESTRA_NOTIFY_TIMEOUT": "2"})
    cluster.api.put_project("q")
    trickler = Trickler()
    try:
        with Receiver() as receiver:
            for project, url in (("p", trickler.url), ("q", receiver.url)):
                body = {"identifier": "n", "events": ["run.started"], "url": url}
                cluster.api.request("POST", f"/projects/{project}/notifications", 201, json=body)
                cluster.api.put_job("j", [["true"]], project=project)
            cluster.start_worker("w1")
            cluster.api.trigger("j", project="p")
            assert trickler.connected.wait(60), "the slow receiver was never called"
            cluster.api.trigger("j", project="q")
            # Another project's delivery goes out while the slow receiver still trickles.
            wait_until(lambda: len(receiver.all()) == 1, 20, "q's notification delivered")
            assert not trickler.stop.is_set()

            def given_up() -> bool:
                shown = cluster.api.request("GET", "/projects/p/notifications/n/deliveries", 200)
                error = shown.json()["items"][0]["last_error"] or ""
                return "no answer within 2 s" in error

            wait_until(given_up, 20, "the slow attempt cut at its timeout")
    finally:
        trickler.close()
