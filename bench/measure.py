"""What the figures are read with besides the API: a process's CPU use over an interval, the
RSS of some processes sampled in a thread, a SQLAlchemy engine on a cluster's database, and the
PostgreSQL server's version."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from tests.support.databases import admin_connection
from tests.support.procfs import cpu_seconds, rss_bytes

from bench.context import postgres_server


class CpuMeter:
    """CPU use of a process over an interval, as a percentage of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall = time.perf_counter()
        self.cpu = cpu_seconds(pid)

    def read(self) -> tuple[float, float]:
        """(CPU seconds, wall seconds) since the meter started."""
        return cpu_seconds(self.pid) - self.cpu, time.perf_counter() - self.wall

    def percent(self) -> float:
        cpu, wall = self.read()
        return 100.0 * cpu / wall if wall > 0 else 0.0


class MemorySampler:
    """Samples the RSS of some processes every `interval` seconds in a thread."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.1) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in self.pids}
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter() - self._start
            for name, pid in self.pids.items():
                self.samples[name].append((now, rss_bytes(pid)))
            self._stop.wait(self.interval)

    def peak(self, name: str) -> int:
        return max((rss for _, rss in self.samples[name]), default=0)


def postgres_version() -> str | None:
    """The bench's PostgreSQL server's version, or None when there is none to reach."""
    with contextlib.suppress(Exception), admin_connection(postgres_server()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else None
    return None


def sync_engine(database_url: str) -> Any:
    """A synchronous SQLAlchemy engine on the database (for bulk inserts and checks)."""
    import sqlalchemy as sa

    from orchestra.storage.engine import sync_url

    engine = sa.create_engine(sync_url(database_url))
    if database_url.startswith("sqlite"):
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine
