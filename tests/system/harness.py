"""A harness for system tests: real `orchestra server` and `orchestra worker` processes on a real
database, driven over the HTTP API and the CLI.

Every process is `sys.executable -m orchestra ...` with an explicit environment, its stdout and
stderr in `<tmp_path>/<name>.log`. Waiting is always polling a condition with a deadline. Every
process a test starts (and every job process they start in turn) carries a tag in its environment,
so that the finalizer can find and kill whatever is left, daemonized grandchildren included.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

PYTHON = sys.executable
API = "/api/v1"
TAG_VARIABLE = "ORCHESTRA_SYSTEM_TEST"
FINAL_STATUSES = frozenset({"succeeded", "failed", "aborted", "cancelled", "exception"})
# Short settings, so that liveness, aborts and leases play out in seconds.
DEFAULT_SETTINGS = {
    "ORCHESTRA_HEARTBEAT": "1",
    "ORCHESTRA_ABORT_GRACE": "2",
    "ORCHESTRA_LEASE": "120",
}
LISTENING = re.compile(r"listening on (http://\S+)")
STOP_TIMEOUT = 15.0
T = TypeVar("T")


# Waiting.


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def holds_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Check repeatedly, for `seconds`, that `condition` still holds."""
    deadline = time.monotonic() + seconds
    checks = 0
    while True:
        assert condition(), f"{what} stopped holding after {checks} checks"
        checks += 1
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)


# Processes.


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat.rsplit(b") ", 1)[-1][:1] == b"Z"


def process_stats() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/PID/stat after the command name: state, ppid, pgrp...) of
    every process still there."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        yield int(entry.name), stat.rsplit(b") ", 1)[-1].split()


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent`, from /proc."""
    return [pid for pid, fields in process_stats() if int(fields[1]) == parent]


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def tagged_pids(tag: str) -> list[int]:
    """Every process whose environment carries this test's tag."""
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


def free_port() -> int:
    """A port nothing listens on right now (for a server that must come back on the same one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """One `python -m orchestra ...` process with its log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv, env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
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

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL this process alone (not its group, not its children)."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, then SIGKILL; the exit status."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout=timeout)


# Jobs.


def py(code: str, *arguments: str) -> list[str]:
    """A step command running `code` with this Python; braces are escaped for the command
    template (only `arguments` may hold `{parameters[...]}` fields)."""
    source = textwrap.dedent(code).strip()
    return [PYTHON, "-c", source.replace("{", "{{").replace("}", "}}"), *arguments]


# A step that waits (a minute and a half at most) for the file its first argument names.
WAIT_FOR_FILE = """
    import pathlib, sys, time
    deadline = time.monotonic() + 90
    while not pathlib.Path(sys.argv[1]).exists():
        if time.monotonic() > deadline:
            sys.exit("the file never came")
        time.sleep(0.05)
"""


def numbered_lines(first: int, last: int) -> str:
    return "".join(f"line {n}\n" for n in range(first, last + 1))


# The API.


class Api:
    """An httpx client on /api/v1 with helpers for projects, jobs, runs and workers."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.Client(
            base_url=url + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0),
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, expect: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if expect is not None and response.status_code != expect:
            raise AssertionError(
                f"{method} {path}: expected {expect}, got {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response

    # Projects and jobs.

    def put_project(self, project: str = "p", **fields: Any) -> dict[str, Any]:
        response = self.request("PUT", f"/projects/{project}", json=fields)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def patch_project(self, project: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/projects/{project}", 200, json=fields).json())

    def put_job(
        self,
        job: str,
        steps: Iterable[list[str] | Mapping[str, Any]],
        project: str = "p",
        **fields: Any,
    ) -> dict[str, Any]:
        """Create or replace a job; each step is a command, or a mapping with name and command."""
        body = {
            **fields,
            "steps": [
                dict(s) if isinstance(s, Mapping) else {"name": f"step{i}", "command": s}
                for i, s in enumerate(steps)
            ],
        }
        response = self.request("PUT", f"/projects/{project}/jobs/{job}", json=body)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def patch_job(self, job: str, project: str = "p", **fields: Any) -> dict[str, Any]:
        return dict(
            self.request("PATCH", f"/projects/{project}/jobs/{job}", 200, json=fields).json()
        )

    # Runs.

    def trigger(
        self, job: str, project: str = "p", parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        response = self.request(
            "POST",
            f"/projects/{project}/jobs/{job}/trigger",
            201,
            json={"parameters": dict(parameters or {})},
        )
        return dict(response.json())

    def get_run(self, run: str | Mapping[str, Any], project: str = "p") -> dict[str, Any]:
        """GET /projects/P/runs/R (a pending run there also says why it waits)."""
        return dict(self.request("GET", f"/projects/{project}/runs/{_run_id(run)}", 200).json())

    def runs(self, project: str = "p", **filters: str) -> list[dict[str, Any]]:
        """The project's runs, newest first (the tests make far fewer than one page)."""
        params = {"limit": 500, **filters}
        page = self.request("GET", f"/projects/{project}/runs", 200, params=params).json()
        return [dict(item) for item in page["items"]]

    def cancel(self, run: str | Mapping[str, Any], project: str = "p") -> httpx.Response:
        return self.request("POST", f"/projects/{project}/runs/{_run_id(run)}/cancel")

    def abort(self, run: str | Mapping[str, Any], project: str = "p") -> httpx.Response:
        return self.request("POST", f"/projects/{project}/runs/{_run_id(run)}/abort")

    def wait_for_status(
        self,
        run: str | Mapping[str, Any],
        statuses: str | Iterable[str],
        timeout: float = 30.0,
        project: str = "p",
    ) -> dict[str, Any]:
        """Poll the run until its status is one of `statuses`; fail at once if it reaches
        another final status, and after `timeout` seconds."""
        wanted = {statuses} if isinstance(statuses, str) else set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_run(run, project)
            if current["status"] in wanted:
                return current
            if current["status"] in FINAL_STATUSES:
                raise AssertionError(
                    f"run {current['identifier']} ended {current['status']} "
                    f"(reason: {current.get('reason')!r}), not {sorted(wanted)}: {current}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {current['identifier']} still {current['status']} after "
                    f"{timeout:g}s, not {sorted(wanted)}"
                )
            time.sleep(0.05)

    def log(
        self,
        run: str | Mapping[str, Any],
        project: str = "p",
        *,
        step: int | None = None,
        offset: int | None = None,
    ) -> bytes:
        path = f"/projects/{project}/runs/{_run_id(run)}"
        path += "/log" if step is None else f"/steps/{step}/log"
        params = {} if offset is None else {"offset": offset}
        return self.request("GET", path, 200, params=params).content

    # Workers.

    def worker(self, identifier: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/workers/{identifier}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())

    def patch_worker(self, identifier: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/workers/{identifier}", 200, json=fields).json())

    def wait_for_worker(self, identifier: str, is_active: bool, timeout: float = 30.0) -> None:
        def seen() -> bool:
            worker = self.worker(identifier)
            return worker is not None and worker["is_active"] is is_active

        wait_until(seen, timeout, f"worker {identifier} is_active={is_active}")


def _run_id(run: str | Mapping[str, Any]) -> str:
    return run if isinstance(run, str) else str(run["identifier"])


# Databases and credentials.

WORKER_USER = "agent"


def base_env(home: Path, tag: str) -> dict[str, str]:
    """What every process gets: no ORCHESTRA_* setting leaks in from the test's environment
    (PYTHONPATH does, so that the processes import the same orchestra as the tests)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        TAG_VARIABLE: tag,
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@dataclass(frozen=True)
class Credentials:
    admin_token: str  # of the user `admin`, role administrator
    worker_token: str  # of WORKER_USER, role worker


def bootstrap(database_url: str, directory: Path) -> Credentials:
    """Migrate a database and create the administrator and the workers' user with the real
    `orchestra admin` commands (once per engine: each test gets a copy of the result)."""

    def admin(*arguments: str) -> str:
        argv = [PYTHON, "-m", "orchestra", "admin", *arguments]
        argv += ["--database", database_url, "--data-dir", str(directory)]
        env = base_env(directory, "bootstrap")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr[-2000:]}"
        return done.stdout

    def token(user: str) -> str:
        return admin("create-token", user).strip().splitlines()[-1]

    admin("create-user", "admin", "--role", "administrator")
    admin("create-user", WORKER_USER, "--role", "worker")
    return Credentials(admin_token=token("admin"), worker_token=token(WORKER_USER))


# The whole system.


class Cluster:
    """The server and workers of one test, on one database, under one tmp_path."""

    def __init__(self, tmp_path: Path, database_url: str, credentials: Credentials) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.admin_token = credentials.admin_token
        self.worker_token = credentials.worker_token
        self.tag = uuid.uuid4().hex
        self.server_dir = tmp_path / "server"
        self.server_dir.mkdir()
        self.processes: list[Process] = []
        self.server: Process | None = None
        self.url = ""
        self._api: Api | None = None
        self._names = itertools.count(1)

    # Environment and commands.

    def env(self, settings: Mapping[str, str] | None = None) -> dict[str, str]:
        """The explicit environment of every process this test starts."""
        return {**base_env(self.tmp_path, self.tag), **DEFAULT_SETTINGS, **(settings or {})}

    def client_env(self) -> dict[str, str]:
        """The environment of a CLI client (`orchestra run ...`) as the administrator."""
        return {
            **self.env(),
            "ORCHESTRA_URL": self.url,
            "ORCHESTRA_USER": "admin",
            "ORCHESTRA_TOKEN": self.admin_token,
        }

    @property
    def api(self) -> Api:
        assert self._api is not None, "start the server first"
        return self._api

    # The server.

    def start_server(
        self, port: int = 0, settings: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> Process:
        """Start the server, wait for its URL and its health, and open the API client."""
        name = f"server-{next(self._names)}"
        argv = [PYTHON, "-m", "orchestra", "server", "--port", str(port)]
        argv += ["--database", self.database_url, "--data-dir", str(self.server_dir)]
        process = self._start(name, argv, settings)
        self.server = process

        def listening() -> str | None:
            if not process.running():
                raise AssertionError(f"{name} exited {process.popen.returncode}:\n{process.tail()}")
            match = LISTENING.search(process.log())
            return match.group(1) if match else None

        self.url = wait_until(listening, timeout, f"{name} to print its URL")
        wait_until(self._healthy, timeout, f"{name} to answer health")
        if self._api is not None:
            self._api.close()
        self._api = Api(self.url, self.admin_token)
        return process

    def _healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.url}{API}/health", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def start(self, settings: Mapping[str, str] | None = None, port: int = 0) -> Cluster:
        """Start the server and create project `p`."""
        self.start_server(port=port, settings=settings)
        self.api.put_project("p")
        return self

    # Workers.

    def worker_dir(self, identifier: str) -> Path:
        return self.tmp_path / "workers" / identifier

    def start_worker(
        self,
        identifier: str,
        properties: Mapping[str, str] | None = None,
        executors: int = 1,
        *,
        wait: bool = True,
    ) -> Process:
        """Start `orchestra worker` (data in tmp_path/workers/ID) and, unless told otherwise,
        wait until the API shows it active."""
        argv = [PYTHON, "-m", "orchestra", "worker", "--url", self.url]
        argv += ["--user", WORKER_USER, "--token", self.worker_token]
        argv += ["--identifier", identifier, "--data-dir", str(self.worker_dir(identifier))]
        argv += ["--executors", str(executors)]
        for key, value in (properties or {}).items():
            argv += ["--property", f"{key}={value}"]
        process = self._start(f"worker-{identifier}-{next(self._names)}", argv, None)
        if wait:
            self.wait_for_active(identifier, process)
        return process

    def wait_for_active(self, identifier: str, process: Process, timeout: float = 30.0) -> None:
        def active() -> bool:
            if not process.running():
                raise AssertionError(
                    f"{process.name} exited {process.popen.returncode}:\n{process.tail()}"
                )
            worker = self.api.worker(identifier)
            return worker is not None and worker["is_active"] is True

        wait_until(active, timeout, f"worker {identifier} to be active")

    def spawner_of(self, worker: Process) -> int:
        """The pid of the worker agent's spawner (its `orchestra.worker.spawner` child)."""
        pids = [
            pid for pid in child_pids(worker.pid) if "orchestra.worker.spawner" in command_line(pid)
        ]
        assert len(pids) == 1, f"expected one spawner under {worker.pid}, found {pids}"
        return pids[0]

    # Life cycle.

    def _start(self, name: str, argv: list[str], settings: Mapping[str, str] | None) -> Process:
        process = Process(name, argv, self.env(settings), self.tmp_path / f"{name}.log")
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Stop every process (workers first), then kill whatever carries this test's tag."""
        if self._api is not None:
            self._api.close()
        for process in reversed(self.processes):
            if process.running():
                process.stop()
        for pid in tagged_pids(self.tag):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                group = os.getpgid(pid)
                if group != os.getpgrp():
                    os.killpg(group, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def log_tails(self, lines: int = 60) -> str:
        parts = []
        for process in self.processes:
            state = "running" if process.running() else f"exited {process.popen.returncode}"
            parts.append(
                f"===== {process.name} ({state}) {process.log_path}\n{process.tail(lines)}"
            )
        return "\n".join(parts)
