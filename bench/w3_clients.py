"""Lightweight worker-protocol clients for W3: many idle workers in one process.

Each client opens a WebSocket to the master's worker endpoint, sends `hello`, waits for
`welcome`, then sends `heartbeat` at the interval the master asked for, and runs nothing.
Driven over stdin and stdout by bench/w3_connections.py:

    stdout "ready"          imports done
    stdin  "go"             connect every client now
    stdout {"registered": N, "failed": N, "errors": [...], "seconds": S}
    stdin  "stop" (or EOF)  close every connection, then exit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from websockets.asyncio.client import ClientConnection, connect


async def client(
    url: str,
    token: str,
    identifier: str,
    gate: asyncio.Semaphore,
    stop: asyncio.Event,
    registered: asyncio.Queue[str | None],
) -> None:
    connection: ClientConnection | None = None
    try:
        async with gate:
            connection = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=60,
                ping_interval=20,
                ping_timeout=20,
            )
            hello = {
                "type": "hello",
                "protocol": 1,
                "identifier": identifier,
                "display_name": identifier,
                "version": "bench",
                "properties": {},
                "executors": 1,
                "runs": [],
            }
            await connection.send(json.dumps(hello))
            welcome = json.loads(await asyncio.wait_for(connection.recv(), 60))
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"expected welcome, got {welcome}")
        await registered.put(None)
    except Exception as exc:
        await registered.put(f"{identifier}: {type(exc).__name__}: {exc}")
        if connection is not None:
            await connection.close()
        return
    interval = float(welcome.get("heartbeat_interval", 5.0))
    heartbeat = json.dumps({"type": "heartbeat"})
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                await connection.send(heartbeat)
    except Exception:
        pass
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    options = parser.parse_args()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        return
    started = time.perf_counter()
    gate = asyncio.Semaphore(options.concurrency)
    stop = asyncio.Event()
    registered: asyncio.Queue[str | None] = asyncio.Queue()
    tasks = [
        asyncio.create_task(
            client(
                options.url,
                options.token,
                f"{options.prefix}-{n:05d}",
                gate,
                stop,
                registered,
            )
        )
        for n in range(options.count)
    ]
    errors: list[str] = []
    for _ in range(options.count):
        outcome = await registered.get()
        if outcome is not None:
            errors.append(outcome)
    report = {
        "registered": options.count - len(errors),
        "failed": len(errors),
        "errors": errors[:5],
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(report), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print("closed", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
