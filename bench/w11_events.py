"""W11, the live event stream: 1,000 clients on GET /api/v1/events while runs go at full speed
(W2's load: 4 workers x 2 executors, runs triggered 16 at a time), on SQLite and PostgreSQL.

READERS clients follow every event and measure each one's latency: from the change (the
object's `update_date` in the event's data, which the server sets just before the change's
commit) to its arrival at the client, on this machine's one clock. The other clients follow a
project where nothing happens (`?project=idle`): connected, filtered, idle. They run in a
process of their own (a raw asyncio HTTP client: httpx's own CPU would be measured), apart from
the triggers. The server's memory per idle client is its resident memory with the clients
connected, less before, over their number (measured before the runs start). Then, with the same
clients connected, runs one at a time (each awaited): the stream's latency when the runs do not
saturate the server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from tests.support.processes import API
from tests.support.procfs import rss_bytes

from bench.context import Context
from bench.report import Figure, Workload, percentile, summary
from bench.w2_throughput import EXECUTORS, WORKERS, trigger_all

TARGET_P99_MS = 50.0
MIB = 1024 * 1024
_UPDATED = re.compile(rb'"update_date":"([^"]+)"')


async def _client(
    url: str, token: str, query: str, latencies: list[float] | None, ready: list[int]
) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        (
            f"GET {API}/events{query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"events: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    ready.append(1)
    try:
        while True:  # chunked: a frame (or a few) per chunk
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            if latencies is None:
                continue
            now = time.time()
            for found in _UPDATED.finditer(chunk):
                changed = datetime.fromisoformat(found.group(1).decode()).timestamp()
                latencies.append((now - changed) * 1000)
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


def _clients_process(
    url: str, token: str, clients: int, readers: int, pipe: Any, stop: Any
) -> None:
    """The clients, in a process of their own: says "ready" once all are connected, and sends
    back the readers' latencies once `stop` is set."""

    async def main() -> None:
        latencies: list[float] = []
        ready: list[int] = []
        tasks = []
        for index in range(clients):
            reading = index < readers
            query = "" if reading else "?project=idle"
            tasks.append(
                asyncio.create_task(
                    _client(url, token, query, latencies if reading else None, ready)
                )
            )
            if index % 50 == 49:
                await asyncio.sleep(0.05)  # not all at once: the server's listen backlog
        while len(ready) < clients:
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise RuntimeError(f"a client failed: {failed[0].exception()!r}")
            await asyncio.sleep(0.05)
        pipe.send("ready")
        while not stop.is_set():
            # "collect": the latencies so far, and start again (one list per phase).
            if pipe.poll():
                pipe.recv()
                pipe.send(list(latencies))
                latencies.clear()
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()

    asyncio.run(main())


def _collect(pipe: Any) -> list[float]:
    pipe.send("collect")
    if not pipe.poll(120):
        raise RuntimeError("the clients did not answer")
    latencies: list[float] = pipe.recv()
    return latencies


def measure(
    ctx: Context, engine: str, clients: int, readers: int, runs: int, quiet: int
) -> dict[str, Any]:
    with ctx.cluster(f"w11-{engine}", engine) as cluster:
        server = cluster.start_server()
        identifiers = [f"w{i}" for i in range(1, WORKERS + 1)]
        for identifier in identifiers:
            cluster.start_worker(identifier, executors=EXECUTORS, wait=False)
        cluster.wait_for_workers(identifiers)
        api = cluster.api
        api.put_project("p")
        api.put_project("idle")
        api.put_job("trivial", [["true"]])
        time.sleep(1.0)
        rss_before = rss_bytes(server.pid)
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        stop = context.Event()
        process = context.Process(
            target=_clients_process,
            args=(cluster.url, cluster.admin_token, clients, readers, theirs, stop),
            daemon=True,
        )
        process.start()
        try:
            if not ours.poll(300) or ours.recv() != "ready":
                raise RuntimeError("the clients did not connect")
            time.sleep(2.0)
            rss_connected = rss_bytes(server.pid)
            started = time.perf_counter()
            asyncio.run(trigger_all(cluster.url, cluster.admin_token, runs))
            api.wait_drained(ctx.size(900, 120), f"{runs} runs to complete")
            seconds = time.perf_counter() - started
            time.sleep(1.0)  # the last events reach the clients
            latencies = _collect(ours)
            # The same clients while runs go one at a time: the stream's own latency, when
            # the server is not saturated by the runs.
            for _ in range(quiet):
                run = api.trigger("trivial")
                api.wait_for_status(run, "succeeded", 60)
            time.sleep(0.5)
            quiet_latencies = _collect(ours)
        finally:
            stop.set()
            process.join(30)
            if process.is_alive():
                process.kill()
    if not latencies or not quiet_latencies:
        raise RuntimeError("no event reached the readers")
    return {
        "latency_ms": summary(latencies),
        "latency_p99_ms": percentile(latencies, 99),
        "one_at_a_time_latency_ms": summary(quiet_latencies),
        "events_measured": len(latencies),
        "runs_per_second": runs / seconds,
        "rss_before_mib": rss_before / MIB,
        "rss_connected_mib": rss_connected / MIB,
        "kib_per_idle_client": (rss_connected - rss_before) / 1024 / clients,
    }


def run(ctx: Context) -> Workload:
    clients = ctx.size(1000, 20)
    readers = ctx.size(20, 4)
    runs = ctx.size(1500, 16)
    quiet = ctx.size(30, 3)
    result = Workload("W11", "live event stream: 1,000 clients while runs go at full speed")
    result.size = {"clients": clients, "readers": readers, "runs": runs, "one_at_a_time": quiet}
    for engine in ("sqlite", "postgresql"):
        measured = measure(ctx, engine, clients, readers, runs, quiet)
        p99 = measured["latency_p99_ms"]
        figure = Figure(
            f"{engine}_event_p99_ms",
            f"event latency p99, {engine}",
            p99,
            "ms",
            baseline=f"{measured['runs_per_second']:.0f} runs/s meanwhile",
            target=f"<= {TARGET_P99_MS:g} ms",
        )
        figure.met = p99 <= TARGET_P99_MS
        result.add(figure)
        one = measured["one_at_a_time_latency_ms"]["p99"]
        result.add(
            Figure(
                f"{engine}_event_p99_one_at_a_time_ms",
                f"event latency p99, runs one at a time, {engine}",
                one,
                "ms",
                target=f"<= {TARGET_P99_MS:g} ms",
                met=one <= TARGET_P99_MS,
            )
        )
        result.add(
            Figure(
                f"{engine}_kib_per_idle_client",
                f"server memory per idle client, {engine}",
                measured["kib_per_idle_client"],
                "KiB",
            )
        )
        result.details[engine] = measured
    return result
