"""Starting and stopping real `orchestra` processes: each with an explicit environment, in a
session of its own, its output in a log file; a server is waited for until it prints its URL and
answers health. TaggedProcesses are the processes of one test (or one benchmark cluster): they
carry one tag, so that closing them also kills whatever they started."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.procfs import TAG_VARIABLE, kill_tagged
from tests.support.waiting import wait_until

PYTHON = sys.executable
API = "/api/v1"
LISTENING = re.compile(r"listening on (http://\S+)")
STOP_TIMEOUT = 15.0
# The instance key every process of the tests shares (ORCHESTRA_SECRET_KEY), so that servers
# with data directories of their own, and the `orchestra admin` commands that bootstrapped their
# database, hold the same key (services/key_check.py refuses a server with another one). A test
# of the key file passes ORCHESTRA_SECRET_KEY="" in `settings`.
TEST_SECRET_KEY = "FO77Y5CKYAqTow1nYLmHodCJfXBp4/zFLQTuEym9qUI="


def orchestra_argv(*arguments: str) -> list[str]:
    """The command line of `orchestra ARGUMENTS...` with this Python."""
    return [PYTHON, "-m", "orchestra", *arguments]


def clean_env(
    home: Path, tag: str | None = None, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An environment in which no ORCHESTRA_* setting leaks in from ours (PYTHONPATH does, so
    that the processes import the same orchestra); `settings` add some."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "ORCHESTRA_SECRET_KEY": TEST_SECRET_KEY,
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if tag is not None:
        env[TAG_VARIABLE] = tag
    env.update(settings or {})
    return env


def run_orchestra(
    arguments: list[str],
    env: Mapping[str, str],
    *,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run `orchestra ARGUMENTS...` to its end; its exit status and output."""
    return subprocess.run(
        orchestra_argv(*arguments),
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=timeout,
    )


def free_port() -> int:
    """A port nothing listens on right now (for a server that must come back on the same one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether the server at `url` answers its health check."""
    try:
        return httpx.get(f"{url}{API}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


class Process:
    """One process in a session of its own, its output (stderr, and stdout unless given
    another) in a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=stdin,
                stdout=log if stdout is None else stdout,
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

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def exited(self) -> AssertionError:
        """The failure to raise when this process exited where it should run."""
        return AssertionError(f"{self.name} exited {self.popen.returncode}:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL this process alone (not its group, not its children)."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, then SIGKILL its whole group; the exit status."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
        return self.popen.wait(timeout=timeout)

    def wait_for_url(self, timeout: float = 60.0) -> str:
        """The URL a server prints once it listens; fails at once if the process exits."""

        def listening() -> str | None:
            if not self.running():
                raise self.exited()
            found = LISTENING.search(self.log())
            return found.group(1) if found else None

        return wait_until(listening, timeout, f"{self.name} to print its URL")

    def wait_until_serving(self, timeout: float = 60.0) -> str:
        """The URL of a server once it answers health."""
        url = self.wait_for_url(timeout)
        wait_until(lambda: healthy(url), timeout, f"{self.name} to answer health")
        return url


class TaggedProcesses:
    """The processes of one test (or one benchmark cluster), their logs under `directory`. Each
    gets the same explicit environment, `settings` added, and a tag; `close` stops them (the
    last started first) and kills whatever else carries the tag."""

    def __init__(self, directory: Path, settings: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.settings = dict(settings or {})
        self.tag = uuid.uuid4().hex
        self.processes: list[Process] = []
        self._numbers = itertools.count(1)

    def env(self, settings: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every process started here (and of a command run by the test)."""
        return clean_env(self.directory, self.tag, {**self.settings, **(settings or {})})

    def unique(self, name: str) -> str:
        """`name` with a number no other process here has."""
        return f"{name}-{next(self._numbers)}"

    def spawn(
        self, name: str, argv: list[str], settings: Mapping[str, str] | None = None, **options: Any
    ) -> Process:
        """Start a process (log: DIRECTORY/NAME.log); `options` go to Process (cwd, stdin,
        stdout)."""
        process = Process(name, argv, self.env(settings), self.directory / f"{name}.log", **options)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                if process.running():
                    process.stop()
        kill_tagged(self.tag)

    def log_tails(self, lines: int = 60) -> str:
        parts = []
        for process in self.processes:
            state = "running" if process.running() else f"exited {process.popen.returncode}"
            parts.append(
                f"===== {process.name} ({state}) {process.log_path}\n{process.tail(lines)}"
            )
        return "\n".join(parts)
