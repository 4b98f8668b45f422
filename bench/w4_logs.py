"""W4, logs: one run whose one step prints a large output (SQLite, one worker).

- to the stored log: the size over the time from the trigger to the run seen final in the API
  (polled every 20 ms): the master makes a run final only once it has applied every output
  event before `run_ended` (the run's own `completion_date` is the worker's clock when the
  process ended, which says nothing of what the master has stored);
- to a live reader: `GET .../log?follow=true` started right after the trigger, from the
  trigger to the end of the stream;
- byte-identical: the SHA-256 of what the follower read, and of the stored log read back, equal
  that of the output written straight to a file;
- memory: the peak RSS of the master and of the worker agent above their RSS before the run,
  for a run a quarter of the size first and then the full one: flat if the larger log does not
  raise the peak.

The baseline is the same program with its output going straight to a file (bare spawn).
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from datetime import datetime
from typing import Any

from tests.support.api import FINAL_STATUSES
from tests.support.cluster import Cluster
from tests.support.processes import PYTHON
from tests.support.procfs import rss_bytes
from tests.support.waiting import wait_until

from bench.context import Context
from bench.measure import MemorySampler
from bench.report import Figure, Workload, ratio

MB = 1_000_000
MIB = 1024 * 1024
BLOCK = 1_000_000
TARGET_MB_PER_SECOND = 50.0
# "Flat": four times the log adds less than this much peak RSS per MB (whole-log buffering
# would add about 1 MiB per MB, or several with base64 and copies).
FLAT_SLOPE = 0.1
# Writes argv[1] bytes to stdout: 1 MB blocks, each numbered, so order and content both count.
PRODUCER = """
import sys
size = int(sys.argv[1])
out = sys.stdout.buffer
line = b"orchestra bench: the quick brown fox jumps over the lazy dog 0123456789\\n"
body = line * (1000000 // len(line) + 1)
for n in range(size // 1000000):
    header = b"block %010d\\n" % n
    out.write(header + body[: 1000000 - len(header)])
out.flush()
"""


def producer_command(size: int) -> list[str]:
    """The producer as a step command (braces escaped for the command template)."""
    code = PRODUCER.strip().replace("{", "{{").replace("}", "}}")
    return [PYTHON, "-c", code, str(size)]


def floor(size: int, path: Any) -> tuple[float, str]:
    """MB/s of the producer writing straight to a file, and the output's SHA-256."""
    started = time.perf_counter()
    with open(path, "wb") as out:
        subprocess.run([PYTHON, "-c", PRODUCER.strip(), str(size)], stdout=out, check=True)
    elapsed = time.perf_counter() - started
    digest = hashlib.sha256()
    with open(path, "rb") as stored:
        while chunk := stored.read(1 << 20):
            digest.update(chunk)
    path.unlink()
    return size / MB / elapsed, digest.hexdigest()


class Follower(threading.Thread):
    """Reads `GET .../log?follow=true` to its end, hashing as it goes."""

    def __init__(self, cluster: Cluster, run: str, started: float) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.run_id = run
        self.started = started
        self.size = 0
        self.digest = hashlib.sha256()
        self.seconds = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            # A client of its own: the main thread polls the run meanwhile.
            api = self.cluster.client()
            path = f"/projects/p/runs/{self.run_id}/log"
            try:
                with api.http.stream("GET", path, params={"follow": "true"}) as response:
                    for chunk in response.iter_bytes():
                        self.size += len(chunk)
                        self.digest.update(chunk)
                self.seconds = time.perf_counter() - self.started
            finally:
                api.close()
        except BaseException as exc:
            self.error = exc


def one_run(
    cluster: Cluster, job: str, size: int, expected: str, pids: dict[str, int], timeout: float
) -> dict[str, Any]:
    """Trigger `job`, follow its log live, wait until the master has stored it all (the run
    is final only once every output event before `run_ended` is applied), read it back."""
    api = cluster.api
    before = {name: rss_bytes(pid) for name, pid in pids.items()}
    with MemorySampler(pids) as memory:
        started = time.perf_counter()
        run_id = api.trigger(job)["identifier"]
        follower = Follower(cluster, run_id, started)
        follower.start()

        def final() -> dict[str, Any] | None:
            current = api.get_run(run_id)
            return current if current["status"] in FINAL_STATUSES else None

        done = wait_until(final, timeout, "the run to end", interval=0.02)
        stored_seconds = time.perf_counter() - started
        follower.join(timeout=300)
    if follower.is_alive() or follower.error is not None:
        raise RuntimeError(f"the follower failed: {follower.error!r}")
    if done["status"] != "succeeded":
        raise RuntimeError(f"the run ended {done['status']}: {done.get('reason')}")
    read_started = time.perf_counter()
    stored = hashlib.sha256()
    stored_size = 0
    with api.http.stream("GET", f"/projects/p/runs/{run_id}/log") as response:
        for chunk in response.iter_bytes():
            stored_size += len(chunk)
            stored.update(chunk)
    read_seconds = time.perf_counter() - read_started
    process_seconds = (
        datetime.fromisoformat(done["completion_date"]) - datetime.fromisoformat(done["start_date"])
    ).total_seconds()
    return {
        "stored_mb_per_second": size / MB / stored_seconds,
        "follow_mb_per_second": follower.size / MB / follower.seconds,
        "identical": follower.size == size
        and stored_size == size
        and follower.digest.hexdigest() == expected
        and stored.hexdigest() == expected,
        "stored_seconds": stored_seconds,
        "follow_seconds": follower.seconds,
        "process_seconds_on_worker": process_seconds,
        "read_back_mb_per_second": stored_size / MB / read_seconds,
        "rss_before_mib": {k: v / MIB for k, v in before.items()},
        "rss_peak_mib": {k: memory.peak(k) / MIB for k in pids},
        "rss_growth_mib": {k: (memory.peak(k) - before[k]) / MIB for k in pids},
    }


def run(ctx: Context) -> Workload:
    size = ctx.size(200, 4) * MB
    quarter = size // 4
    result = Workload("W4", "logs: one run printing a large output (SQLite)")
    result.size = {"bytes": size, "first_run_bytes": quarter, "engine": "sqlite"}
    floor_rate, expected = floor(size, ctx.scratch / "w4-floor.out")
    _, expected_quarter = floor(quarter, ctx.scratch / "w4-floor.out")
    timeout = ctx.size(900, 120)
    with ctx.cluster("w4", "sqlite") as cluster:
        server = cluster.start_server()
        worker = cluster.start_worker("w1", executors=1)
        cluster.api.put_project("p")
        cluster.api.put_job("quarter", [producer_command(quarter)])
        cluster.api.put_job("big", [producer_command(size)])
        pids = {"master": server.pid, "worker": worker.pid}
        # A quarter-size run first: memory is flat if the full-size run's peak is no higher.
        small = one_run(cluster, "quarter", quarter, expected_quarter, pids, timeout)
        big = one_run(cluster, "big", size, expected, pids, timeout)

    baseline = f"bare spawn to a file ({floor_rate:.0f} MB/s)"
    stored_rate = big["stored_mb_per_second"]
    result.add(
        Figure(
            "stored_mb_per_second",
            "process to stored log",
            stored_rate,
            "MB/s",
            ratio=ratio(stored_rate, floor_rate),
            baseline=baseline,
            target=f">= {TARGET_MB_PER_SECOND:g} MB/s",
            met=stored_rate >= TARGET_MB_PER_SECOND,
        )
    )
    follow_rate = big["follow_mb_per_second"]
    result.add(
        Figure(
            "follow_mb_per_second",
            "process to live --follow reader",
            follow_rate,
            "MB/s",
            ratio=ratio(follow_rate, floor_rate),
            baseline=baseline,
        )
    )
    identical = big["identical"] and small["identical"]
    result.add(
        Figure(
            "identical",
            "log byte-identical (follow and stored)",
            1.0 if identical else 0.0,
            "yes=1",
            target="identical",
            met=identical,
        )
    )
    added_mb = (size - quarter) / MB
    for name in ("master", "worker"):
        growth = big["rss_growth_mib"][name]
        slope = (growth - small["rss_growth_mib"][name]) / added_mb
        result.add(
            Figure(
                f"{name}_rss_growth_mib",
                f"{name} peak RSS growth, {size // MB} MB log",
                growth,
                "MiB",
                ratio=ratio(growth, small["rss_growth_mib"][name]),
                baseline=f"growth with a {quarter // MB} MB log",
                target=f"flat (< {FLAT_SLOPE:g} MiB per MB more log)",
                met=slope < FLAT_SLOPE,
            )
        )
    result.details = {
        "floor_mb_per_second": floor_rate,
        "sha256": expected,
        "full": big,
        "quarter": small,
    }
    return result
