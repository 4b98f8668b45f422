"""W3, connections: many idle workers on one master (SQLite), as lightweight protocol clients in
a few processes (bench/w3_clients.py), not one process per worker.

Time to register all: from telling the client processes to connect to the last `welcome`
(the master registers a worker in the database before it welcomes it). Then the master's RSS
(VmRSS from /proc) and its CPU over an idle window (utime + stime from /proc/PID/stat), with
the workers heartbeating at the master's default interval. The baselines are the same master's
RSS and idle CPU before any worker connected.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.processes import PYTHON, Process
from tests.support.procfs import rss_bytes
from tests.support.waiting import wait_until

from bench.context import Context
from bench.measure import CpuMeter
from bench.report import Figure, Workload, ratio

CLIENTS = Path(__file__).with_name("w3_clients.py")
MIB = 1024 * 1024
TARGET_SECONDS = 10.0
TARGET_RSS_MIB = 300.0
TARGET_CPU_PERCENT = 5.0


class Lines:
    """The lines a process prints, read in a thread so that waiting can have a deadline."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.popen.stdout
        assert stream is not None
        for line in stream:
            self.queue.put(line.decode().strip())

    def next(self, timeout: float) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"{self.process.name} said nothing for {timeout:g}s:\n{self.process.tail()}"
            ) from None

    def send(self, line: str) -> None:
        stdin = self.process.popen.stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")
        stdin.flush()


def idle_cpu(pid: int, seconds: float) -> float:
    """CPU of `pid` over a window of `seconds` (a measurement window, not a wait for state)."""
    meter = CpuMeter(pid)
    time.sleep(seconds)
    return meter.percent()


def run(ctx: Context) -> Workload:
    total = ctx.size(1000, 20)
    processes = ctx.size(4, 2)
    idle_seconds = ctx.size(10.0, 1.0)
    result = Workload("W3", "connections: idle protocol clients on one master (SQLite)")
    result.size = {
        "workers": total,
        "client_processes": processes,
        "idle_window_seconds": idle_seconds,
        "heartbeat_interval": "default (5 s)",
        "engine": "sqlite",
    }
    details: dict[str, Any] = {}
    with ctx.cluster("w3", "sqlite") as cluster:
        server = cluster.start_server()
        assert server is not None
        pid = server.pid
        details["rss_before_mib"] = rss_bytes(pid) / MIB
        details["idle_cpu_before_percent"] = idle_cpu(pid, idle_seconds)

        per_process = [total // processes + (i < total % processes) for i in range(processes)]
        clients = []
        for index, count in enumerate(per_process):
            argv = [PYTHON, str(CLIENTS), "--url", cluster.ws_url]
            argv += ["--token", cluster.worker_token]
            argv += ["--prefix", f"idle{index}", "--count", str(count)]
            process = cluster.spawn(
                f"clients-{index}", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            clients.append(Lines(process))
        for lines in clients:
            if lines.next(60) != "ready":
                raise RuntimeError(f"{lines.process.name} did not start")
        started = time.perf_counter()
        for lines in clients:
            lines.send("go")
        reports = [json.loads(lines.next(300)) for lines in clients]
        registered_seconds = time.perf_counter() - started
        registered = sum(r["registered"] for r in reports)
        failed = sum(r["failed"] for r in reports)
        details["client_reports"] = reports
        if failed:
            raise RuntimeError(f"{failed} clients failed to register: {reports}")

        def all_active() -> bool:
            active = [w for w in cluster.api.workers() if w["is_active"]]
            return len(active) >= total

        wait_until(all_active, 60, f"{total} workers active in the API", interval=0.5)
        rss_mib = rss_bytes(pid) / MIB
        cpu = idle_cpu(pid, idle_seconds)
        for lines in clients:
            lines.send("stop")
        for lines in clients:
            lines.next(120)  # "closed"
        for lines in clients:
            lines.process.popen.wait(timeout=60)
        details["rss_after_close_mib"] = rss_bytes(pid) / MIB

    connect = ctx.floor.get("ws_connect_ms")
    floor_seconds = total * connect / 1000 if connect else None
    figure = Figure(
        "register_seconds",
        f"{registered} workers registered",
        registered_seconds,
        "s",
        ratio=ratio(registered_seconds, floor_seconds),
        baseline=f"{total} bare WS connects one by one ({floor_seconds:.2f} s)"
        if floor_seconds
        else None,
        target=f"< {TARGET_SECONDS:g} s",
        met=registered_seconds < TARGET_SECONDS,
    )
    result.add(figure)
    before = details["rss_before_mib"]
    result.add(
        Figure(
            "master_rss_mib",
            f"master RSS with {total} workers",
            rss_mib,
            "MiB",
            ratio=ratio(rss_mib, before),
            baseline=f"master RSS with none ({before:.0f} MiB)",
            target=f"< {TARGET_RSS_MIB:g} MiB",
            met=rss_mib < TARGET_RSS_MIB,
        )
    )
    idle_before = details["idle_cpu_before_percent"]
    result.add(
        Figure(
            "master_idle_cpu_percent",
            f"master idle CPU with {total} workers",
            cpu,
            "% of a core",
            ratio=ratio(cpu, idle_before),
            baseline=f"idle CPU with none ({idle_before:.2f}%)",
            target=f"< {TARGET_CPU_PERCENT:g}%",
            met=cpu < TARGET_CPU_PERCENT,
        )
    )
    details["rss_per_worker_kib"] = (rss_mib - before) * 1024 / total
    result.details = details
    return result
