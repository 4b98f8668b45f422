"""W12, webhooks in: signed deliveries accepted per second by one API server, on SQLite (the
all-in-one server: SQLite is single-instance) and PostgreSQL (`--role api`); no worker, so the
runs stay pending.

Each delivery is a different GitHub push (`X-Hub-Signature-256`, its own `X-GitHub-Delivery`)
or a Standard Webhooks message (`webhook-id`, `webhook-timestamp`, `webhook-signature`) to a job
with two parameters taken from the body and a filter that holds; every delivery is signed
before the clock starts (the client's HMACs are not the server's cost). IN_FLIGHT kept-alive
raw connections (bench/rawhttp.py), one request at a time on each. A rate is the deliveries
answered 201 over the time from the first sent to the last answered; every one must be 201,
and the job must then have exactly that many runs. A replay of the first REPLAYS deliveries
after must be answered 200 each and start nothing.

The baseline, on the same server: `POST .../trigger` with a token at the same concurrency (the
same run created, by an authenticated user instead of a signature). The three go in turns, a
fifth of each at a time (ROUNDS), so that each meets the same load of the moment and the same
number of runs already stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from tests.support.processes import API

from bench import rawhttp
from bench.context import Context
from bench.report import Figure, Workload, ratio, summary

IN_FLIGHT = 32
ROUNDS = 5
SCHEMES = ("github", "standard")
TARGET_RATE = 500.0
SECRET = "bench-webhook-secret-0123456789"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"w12-bench-key-0123456789abcdef!!").decode()
REPLAYS = 100
JOB = {
    "parameters": [{"key": "ref", "default": "none"}, {"key": "sha", "default": "none"}],
    "steps": [{"name": "build", "command": ["true", "{parameters[ref]}", "{parameters[sha]}"]}],
}
HOOK = {"parameters": {"ref": "ref", "sha": "head_commit.id"}, "filter": {"ref": "^refs/heads/"}}

Request = tuple[str, bytes, dict[str, str]]


class SignedConnection(rawhttp.Connection):
    """A raw connection that sends a given body with headers of its own per request."""

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> rawhttp.Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (
            f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"{self._headers}{extra}Content-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        return await self._read_response(self._reader)


def signed_push(scheme: str, index: int) -> Request:
    """A signed delivery to job `scheme`, different for each index."""
    body = json.dumps(
        {
            "ref": f"refs/heads/branch-{index % 50}",
            "head_commit": {"id": hashlib.sha1(b"%d" % index).hexdigest()},
            "repository": {"full_name": "bench/repo", "size": index},
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if scheme == "github":
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers |= {
            "X-Hub-Signature-256": f"sha256={digest}",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Event": "push",
        }
    else:
        identifier, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
        key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
        signed = f"{identifier}.{stamp}.".encode() + body
        digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        headers |= {
            "webhook-id": identifier,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{digest}",
        }
    return (f"/webhooks/p/jobs/{scheme}", body, headers)


async def send_all(url: str, requests: list[Request], want: int) -> tuple[float, list[float]]:
    """Send every request over IN_FLIGHT connections; the seconds from the first sent to the
    last answered, and each request's ms. Any answer but `want` fails the workload."""
    timings: list[float] = []
    left = iter(requests)

    async def connection() -> None:
        client = SignedConnection(url + API, {})
        try:
            for path, body, headers in left:
                started = time.perf_counter()
                response = await client.send(path, body, headers)
                if response.status_code != want:
                    raise RuntimeError(f"{path}: {response.status_code} {response.body[:200]!r}")
                timings.append((time.perf_counter() - started) * 1000)
        finally:
            await client.close()

    began = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(IN_FLIGHT)))
    return time.perf_counter() - began, timings


def triggers(token: str, count: int) -> list[Request]:
    body = json.dumps({"parameters": {"ref": "refs/heads/main"}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return [("/projects/p/jobs/baseline/trigger", body, headers)] * count


def measure(ctx: Context, engine: str, count: int) -> dict[str, Any]:
    with ctx.cluster(f"w12-{engine}", engine) as cluster:
        if engine == "sqlite":
            cluster.start_server()  # SQLite is single-instance: the all-in-one server
            api = cluster.api
        else:  # an API server alone, as a busy instance would put behind its webhooks
            _, url = cluster.start_role("api", "api")
            api = cluster.use(url)
        api.put_project("p")
        api.request("PUT", "/projects/p/jobs/baseline", (200, 201), json=JOB)
        for scheme, secret in (("github", SECRET), ("standard", STANDARD_SECRET)):
            hook = {**HOOK, "secret": secret, "signature": scheme}
            api.request(
                "PUT", f"/projects/p/jobs/{scheme}", (200, 201), json={**JOB, "webhook": hook}
            )
        warm = [signed_push("github", -n - 1) for n in range(ctx.size(50, 4))]
        asyncio.run(send_all(cluster.url, warm, 201))
        phases = {
            "baseline": triggers(api.token, count),
            **{scheme: [signed_push(scheme, n) for n in range(count)] for scheme in SCHEMES},
        }
        # In turns, a slice of each at a time: every phase meets the same load of the moment
        # and the same number of runs already stored.
        seconds = dict.fromkeys(phases, 0.0)
        timings: dict[str, list[float]] = {name: [] for name in phases}
        size = max(1, count // ROUNDS)
        for start in range(0, count, size):
            for name, requests in phases.items():
                took, times = asyncio.run(
                    send_all(cluster.url, requests[start : start + size], 201)
                )
                seconds[name] += took
                timings[name] += times
        for scheme in SCHEMES:
            replays = phases[scheme][: min(REPLAYS, count)]
            asyncio.run(send_all(cluster.url, replays, 200))
            runs = sum(1 for _ in api.pages("/projects/p/runs", job=scheme, limit=500))
            if runs != count + (len(warm) if scheme == "github" else 0):
                raise RuntimeError(f"{scheme}: {count} deliveries accepted, {runs} runs")
    return {
        name: {"per_second": count / seconds[name], "ms": summary(timings[name])} for name in phases
    }


def run(ctx: Context) -> Workload:
    count = ctx.size(5000, 40)
    result = Workload("W12", "webhooks in: signed deliveries accepted by one API server")
    result.size = {"deliveries": count, "in_flight": IN_FLIGHT, "replays": REPLAYS}
    for engine in ("sqlite", "postgresql"):
        measured = measure(ctx, engine, count)
        base = measured["baseline"]["per_second"]
        baseline = f"authenticated triggers, same server ({base:.0f}/s)"
        for scheme in SCHEMES:
            rate = measured[scheme]["per_second"]
            result.add(
                Figure(
                    f"{engine}_{scheme}_per_second",
                    f"{scheme} deliveries accepted per second, {engine}",
                    rate,
                    "/s",
                    ratio=ratio(rate, base),
                    baseline=baseline,
                    target=f">= {TARGET_RATE:g}/s",
                    met=rate >= TARGET_RATE,
                )
            )
        result.details[engine] = measured
    return result
