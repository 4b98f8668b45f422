"""What a workload runs against: a database of its own (a SQLite file, or a PostgreSQL database
created for it and dropped after), a real `orchestra server` process and `orchestra worker`
processes, and the /proc readings (CPU time, RSS) the figures need.

Every process is `sys.executable -m orchestra ...` in a session of its own, with its output in
a log file, and carries a tag in its environment: closing a cluster stops its processes, then
kills whatever still carries its tag (spawners, job processes) and nothing else. Waiting is
always polling a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

PYTHON = sys.executable
API = "/api/v1"
POSTGRES_SERVER = os.environ.get(
    "ORCHESTRA_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/"
).rstrip("/")
PG_PREFIX = "orchestra_bench_"
TAG_VARIABLE = "ORCHESTRA_BENCH_TAG"
LISTENING = re.compile(r"listening on (http://\S+)")
FINAL_STATUSES = frozenset({"succeeded", "failed", "aborted", "cancelled", "exception"})
ADMIN_USER = "admin"
WORKER_USER = "agent"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy and return it; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# /proc readings.


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (its own, not its children's)."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat.rsplit(b") ", 1)[1].split()
    # After the command name: state is field 3, utime field 14 and stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


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
                with contextlib.suppress(OSError):
                    self.samples[name].append((now, rss_bytes(pid)))
            self._stop.wait(self.interval)

    def peak(self, name: str) -> int:
        return max((rss for _, rss in self.samples[name]), default=0)


# Databases.


def postgres_admin_url() -> str:
    return f"{POSTGRES_SERVER}/postgres"


def _pg_connect() -> Any:
    import psycopg

    return psycopg.connect(postgres_admin_url(), autocommit=True, connect_timeout=5)


def postgres_version() -> str | None:
    try:
        with _pg_connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:
        return None


def create_postgres(label: str) -> tuple[str, str]:
    """A fresh database named after this process (so concurrent runs never share one)."""
    from psycopg import sql

    name = f"{PG_PREFIX}{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with _pg_connect() as conn:
        _drop_leftovers(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, f"{POSTGRES_SERVER}/{name}"


def drop_postgres(name: str) -> None:
    from psycopg import sql

    with _pg_connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _drop_leftovers(conn: Any) -> None:
    """Drop the bench databases of earlier runs whose process is gone."""
    from psycopg import sql

    pattern = PG_PREFIX.replace("_", r"\_") + "%"
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))
    for (name,) in rows.fetchall():
        found = re.search(r"_(\d+)_[0-9a-f]{6}$", name)
        if found and not _alive(int(found.group(1))):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Credentials:
    admin_token: str
    worker_token: str


def bootstrap(database_url: str, data_dir: Path) -> Credentials:
    """Migrate the database and create an administrator and the workers' user, with a token
    each (what `orchestra admin create-user` and `create-token` do, without three process
    starts)."""
    from orchestra.services.container import Services
    from orchestra.settings import load_settings
    from orchestra.storage.migrate import upgrade

    upgrade(database_url)

    async def create() -> Credentials:
        settings = load_settings({"database_url": database_url, "data_dir": data_dir}, environ={})
        services = Services.build(settings)
        try:
            users = services.users
            await users.create_user(ADMIN_USER, display_name="Bench", roles=["administrator"])
            await users.create_user(WORKER_USER, display_name="Bench workers", roles=["worker"])
            _, admin = await users.create_token(ADMIN_USER, "bench", None)
            _, worker = await users.create_token(WORKER_USER, "bench", None)
        finally:
            await services.close()
        return Credentials(admin_token=admin, worker_token=worker)

    return asyncio.run(create())


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


# Processes.


def tagged_pids(tag: str) -> list[int]:
    needle = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


class Process:
    """One process with its output in a log file, in a session of its own."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                env=dict(env),
                stdin=stdin,
                stdout=stdout if stdout is not None else log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL its whole group."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=timeout)


def base_env(home: Path, tag: str, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """No ORCHESTRA_* setting leaks in from the bench's environment; `settings` add some."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        TAG_VARIABLE: tag,
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(settings or {})
    return env


class Api:
    """An httpx client on /api/v1 with the administrator's token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.http = httpx.Client(
            base_url=url + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(120.0),
        )

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        wanted = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in wanted:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def put_project(self, project: str = "p") -> None:
        self.call("PUT", f"/projects/{project}", (200, 201), json={})

    def put_job(self, job: str, command: list[str], project: str = "p") -> None:
        body = {"steps": [{"name": "s", "command": command}]}
        self.call("PUT", f"/projects/{project}/jobs/{job}", (200, 201), json=body)

    def trigger(self, job: str, project: str = "p") -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST", f"/projects/{project}/jobs/{job}/trigger", 201, json={}
        )
        return result

    def run(self, run: str, project: str = "p") -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/projects/{project}/runs/{run}")
        return result

    def all_runs(self, project: str = "p", **filters: str) -> list[dict[str, Any]]:
        """Every run of the project, newest first, walking the cursor 500 at a time."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500, **filters}
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", f"/projects/{project}/runs", params=params)
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def drained(self, project: str = "p") -> bool:
        """No run of the project is pending or running."""
        return not self._any_run(project, "pending") and not self._any_run(project, "running")

    def wait_drained(self, timeout: float, what: str, project: str = "p") -> None:
        """Until `drained`: every 0.25 s while runs are pending, then every 10 ms (the last
        few running runs end within a few of their cycles), so that the end is seen within
        about 10 ms, not 250, without polling the server being measured 100 times a second."""
        deadline = time.monotonic() + timeout
        wait_until(lambda: not self._any_run(project, "pending"), timeout, what, interval=0.25)
        wait_until(lambda: self.drained(project), deadline - time.monotonic(), what, 0.01)

    def _any_run(self, project: str, status: str) -> bool:
        page = self.call("GET", f"/projects/{project}/runs", params={"status": status, "limit": 1})
        return bool(page["items"])

    def workers(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", "/workers", params=params)
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


class Cluster:
    """One workload's database, server and workers, under `root/name`.

    `engine` is "sqlite" or "postgresql"; `settings` are ORCHESTRA_* variables for every
    process.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        engine: str = "sqlite",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.directory = root / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.settings = dict(settings or {})
        self.tag = uuid.uuid4().hex
        self.processes: list[Process] = []
        self.server: Process | None = None
        self.url = ""
        self.pg_name: str | None = None
        if engine == "sqlite":
            self.database_url = f"sqlite:///{self.directory / 'orchestra.sqlite'}"
        elif engine == "postgresql":
            self.pg_name, self.database_url = create_postgres(name.replace("-", "_"))
        else:
            raise ValueError(f"unknown engine {engine!r}")
        self.credentials = bootstrap(self.database_url, self.directory)
        self._api: Api | None = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.url, self.credentials.admin_token)
        return self._api

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + API + "/workers/connect"

    def env(self) -> dict[str, str]:
        return base_env(self.directory, self.tag, self.settings)

    def start_server(self, timeout: float = 60.0) -> Process:
        argv = [PYTHON, "-m", "orchestra", "server", "--port", "0"]
        argv += ["--data-dir", str(self.directory / "server"), "--database", self.database_url]
        process = self._start("server", argv)
        self.server = process

        def listening() -> str | None:
            if not process.running():
                raise RuntimeError(f"the server exited:\n{process.tail()}")
            found = LISTENING.search(process.log())
            return found.group(1) if found else None

        self.url = wait_until(listening, timeout, "the server to listen")

        def healthy() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.url + API + "/health", timeout=5).status_code == 200
            return False

        wait_until(healthy, timeout, "the server to answer")
        return process

    def start_worker(self, identifier: str, executors: int = 1) -> Process:
        argv = [PYTHON, "-m", "orchestra", "worker", "--url", self.url]
        argv += ["--user", WORKER_USER, "--token", self.credentials.worker_token]
        argv += ["--identifier", identifier, "--executors", str(executors)]
        argv += ["--data-dir", str(self.directory / "workers" / identifier)]
        return self._start(f"worker-{identifier}", argv)

    def wait_for_workers(self, identifiers: list[str], timeout: float = 60.0) -> None:
        wanted = set(identifiers)

        def active() -> bool:
            for process in self.processes:
                if not process.running():
                    raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
            seen = {w["identifier"] for w in self.api.workers() if w["is_active"]}
            return wanted <= seen

        wait_until(active, timeout, f"workers {sorted(wanted)} to be active", interval=0.1)

    def _start(self, name: str, argv: list[str], **kwargs: Any) -> Process:
        process = Process(name, argv, self.env(), self.directory / f"{name}.log", **kwargs)
        self.processes.append(process)
        return process

    def spawn(self, name: str, argv: list[str], **kwargs: Any) -> Process:
        """Start another process of this cluster (it is stopped with the cluster)."""
        return self._start(name, argv, **kwargs)

    def close(self) -> None:
        """Stop the workers, then the server; kill what is left; drop the database."""
        if self._api is not None:
            self._api.close()
            self._api = None
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()
        for pid in tagged_pids(self.tag):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.pg_name is not None:
            drop_postgres(self.pg_name)
            self.pg_name = None
