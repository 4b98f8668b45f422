"""W0, the floor: what this machine does with no Orchestra in the way, measured in the same run
as the workloads it is the baseline of.

- a bare asyncio spawn of `true` (create_subprocess_exec, then wait): median ms one at a time,
  and spawns per second with 8 at a time;
- a WebSocket round trip on loopback (the `websockets` library, an echo server in another
  process, a heartbeat-sized text frame), and the time to open one connection;
- the CPU time to create a new, empty file in the scratch directory, where the workers keep
  their journals: a worker creates a few per run, and on this machine's disk the cost of one
  has ranged from 16 us to 0.5 ms from one directory, and one hour, to the next (see "Where
  the bench writes" in docs/performance.md).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

from bench.context import Context
from bench.report import Figure, Workload, percentile, summary

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""
FRAME = '{"type":"heartbeat"}'


async def spawn_once() -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec("true")
    await process.wait()
    return time.perf_counter() - started


async def spawns(sequential: int, parallel: int, width: int) -> tuple[list[float], float]:
    for _ in range(5):  # warm up
        await spawn_once()
    one_at_a_time = [await spawn_once() for _ in range(sequential)]
    gate = asyncio.Semaphore(width)

    async def gated() -> None:
        async with gate:
            await spawn_once()

    started = time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(parallel)))
    return one_at_a_time, parallel / (time.perf_counter() - started)


async def _websocket(port: int, round_trips: int, connections: int) -> tuple[list, list]:
    url = f"ws://127.0.0.1:{port}/"
    opens = []
    for _ in range(connections):
        started = time.perf_counter()
        async with connect(url) as ws:
            opens.append(time.perf_counter() - started)
            await ws.send(FRAME)
            await ws.recv()
    trips = []
    async with connect(url) as ws:
        for _ in range(20):  # warm up
            await ws.send(FRAME)
            await ws.recv()
        for _ in range(round_trips):
            started = time.perf_counter()
            await ws.send(FRAME)
            await ws.recv()
            trips.append(time.perf_counter() - started)
    return trips, opens


def file_creation_us(directory: Path, count: int) -> float:
    """Median CPU time (user + system, us) to create an empty file under `directory`, in a
    fresh subdirectory as a worker's journal is; the files are removed after."""
    where = directory / "w0-files"
    where.mkdir(parents=True, exist_ok=True)
    costs: list[float] = []
    try:
        for index in range(count):
            before = time.process_time()
            os.close(os.open(where / f"f{index}", os.O_CREAT | os.O_WRONLY, 0o600))
            costs.append((time.process_time() - before) * 1e6)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    return percentile(costs, 50)


def run(ctx: Context) -> Workload:
    sequential = ctx.size(300, 20)
    parallel = ctx.size(2000, 80)
    width = 8
    round_trips = ctx.size(2000, 100)
    connections = ctx.size(100, 10)
    result = Workload("W0", "the floor: bare spawn and WebSocket round trip")
    result.size = {
        "spawns_sequential": sequential,
        "spawns_parallel": parallel,
        "parallel_width": width,
        "ws_round_trips": round_trips,
        "ws_connections": connections,
    }
    one_at_a_time, rate = asyncio.run(spawns(sequential, parallel, width))
    spawn_ms = [s * 1000 for s in one_at_a_time]

    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None
        port = int(echo.stdout.readline())
        trips, opens = asyncio.run(_websocket(port, round_trips, connections))
    finally:
        assert echo.stdin is not None
        echo.stdin.close()
        try:
            echo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()
    trip_ms = [t * 1000 for t in trips]
    open_ms = [t * 1000 for t in opens]
    file_us = file_creation_us(ctx.scratch, ctx.size(500, 20))

    ctx.floor = {
        "spawn_median_ms": percentile(spawn_ms, 50),
        "spawns_per_second": rate,
        "ws_round_trip_ms": percentile(trip_ms, 50),
        "ws_connect_ms": percentile(open_ms, 50),
        "file_create_us": file_us,
    }
    result.add(
        Figure("spawn_median_ms", "bare spawn of `true`, median", percentile(spawn_ms, 50), "ms")
    )
    result.add(Figure("spawns_per_second", f"bare spawns, {width} at a time", rate, "/s"))
    result.add(
        Figure("ws_round_trip_ms", "WebSocket round trip, median", percentile(trip_ms, 50), "ms")
    )
    result.add(
        Figure(
            "ws_connect_ms", "WebSocket connection opened, median", percentile(open_ms, 50), "ms"
        )
    )
    result.add(
        Figure("file_create_us", "new file in the scratch directory, CPU median", file_us, "us")
    )
    result.details = {
        "scratch": str(ctx.scratch),
        "spawn_ms": summary(spawn_ms),
        "ws_round_trip_ms": summary(trip_ms),
        "ws_connect_ms": summary(open_ms),
    }
    return result
