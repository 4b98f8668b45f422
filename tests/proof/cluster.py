"""The system-test Cluster with what the proof scenarios add: servers of a given role on a given
address, workers with several master URLs, their own token or data directory or network
namespace, extra users and tokens, and the job every scenario runs."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.system.harness import (
    API,
    LISTENING,
    PYTHON,
    WORKER_USER,
    Api,
    Cluster,
    Process,
    process_stats,
    py,
    wait_until,
)

# The proof job. It appends "<run> <pid> <child pid>" to a journal in one O_APPEND write when
# it starts (so a run that starts twice shows twice), optionally starts a child process in its
# own process group (to check that an abort reaches it), then prints `line 1` .. `line N`,
# `interval` seconds apart, optionally waiting for a gate file before the last `hold` lines.
PROOF_JOB = """
    import os, pathlib, subprocess, sys, time
    journal, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    gate, hold, child = sys.argv[4], int(sys.argv[5]), sys.argv[6] == "child"
    pid = subprocess.Popen(["sleep", "300"]).pid if child else 0
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{os.environ['ORCHESTRA_RUN']} {os.getpid()} {pid}\\n".encode())
    os.close(fd)
    for n in range(1, count + 1):
        if gate and n == count - hold + 1:
            deadline = time.monotonic() + 120
            while not pathlib.Path(gate).exists():
                if time.monotonic() > deadline:
                    sys.exit("the gate file never came")
                time.sleep(0.05)
        print(f"line {n}", flush=True)
        if interval:
            time.sleep(interval)
    if pid:
        os.kill(pid, 15)
"""


def proof_job(
    journal: Path,
    lines: int,
    interval: float = 0.0,
    *,
    gate: Path | None = None,
    hold: int = 0,
    child: bool = False,
) -> list[str]:
    """The command of the proof job (see PROOF_JOB)."""
    return py(
        PROOF_JOB,
        str(journal),
        str(lines),
        str(interval),
        str(gate or ""),
        str(hold),
        "child" if child else "no",
    )


# The same contract as PROOF_JOB (journal line, then `line 1` .. `line N`) in sh, whose start
# costs a millisecond where Python's costs tens: for load scenarios that measure Orchestra rather
# than the interpreter. (sh is the program here; Orchestra itself never uses a shell.)
SH_JOB = (
    'printf "%s $$ 0\\n" "$ORCHESTRA_RUN" >> "$1"; i=1; '
    'while [ "$i" -le "$2" ]; do echo "line $i"; i=$((i + 1)); done'
)


def sh_job(journal: Path, lines: int) -> list[str]:
    return ["sh", "-c", SH_JOB, "sh", str(journal), str(lines)]


class ProofCluster(Cluster):
    def start_role(
        self,
        name: str,
        role: str = "all",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Mapping[str, str] | None = None,
        database_url: str | None = None,
        timeout: float = 60.0,
    ) -> tuple[Process, str]:
        """Start `orchestra server --role ROLE` and wait until it is healthy; (process, URL)."""
        argv = [PYTHON, "-m", "orchestra", "server", "--role", role, "--host", host]
        argv += ["--port", str(port), "--database", database_url or self.database_url]
        argv += ["--data-dir", str(self.tmp_path / name)]
        process = self._start(name, argv, settings)

        def listening() -> str | None:
            if not process.running():
                raise AssertionError(f"{name} exited {process.popen.returncode}:\n{process.tail()}")
            match = LISTENING.search(process.log())
            return match.group(1) if match else None

        url = str(wait_until(listening, timeout, f"{name} to listen"))
        wait_until(lambda: healthy(url), timeout, f"{name} to answer health")
        return process, url

    def use(self, url: str) -> Api:
        """Make `url` the cluster's API (for `cluster.api` and `start_worker`)."""
        self.url = url
        if self._api is not None:
            self._api.close()
        self._api = Api(url, self.admin_token)
        return self._api

    def client(self, url: str | None = None, token: str | None = None) -> Api:
        return Api(url or self.url, token or self.admin_token)

    def start_agent(
        self,
        identifier: str,
        urls: Sequence[str] | None = None,
        *,
        executors: int = 1,
        user: str = WORKER_USER,
        token: str | None = None,
        data_dir: Path | None = None,
        netns: str | None = None,
        properties: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> Process:
        """`orchestra worker` with several URLs, its own user, token or data directory, or
        inside a network namespace; waits until the API shows it active unless told not to."""
        argv = [PYTHON, "-m", "orchestra", "worker", "--url", ",".join(urls or [self.url])]
        argv += ["--user", user, "--token", token or self.worker_token]
        argv += ["--identifier", identifier, "--executors", str(executors)]
        argv += ["--data-dir", str(data_dir or self.worker_dir(identifier))]
        for key, value in (properties or {}).items():
            argv += ["--property", f"{key}={value}"]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        process = self._start(f"worker-{identifier}-{next(self._names)}", argv, settings)
        if wait:
            self.wait_for_active(identifier, process)
        return process

    # Users and tokens, through the API as the administrator.

    def create_user(
        self, identifier: str, roles: Sequence[str], password: str | None = None
    ) -> str:
        """Create a user and return a token of theirs."""
        body: dict[str, Any] = {"identifier": identifier, "roles": list(roles)}
        if password is not None:
            body["password"] = password
        self.api.request("POST", "/users", 201, json=body)
        return self.create_token(identifier)[1]

    def create_token(self, user: str) -> tuple[str, str]:
        """(token identifier, secret) of a new token of `user`."""
        created = self.api.request("POST", f"/users/{user}/tokens", 201, json={}).json()
        return str(created["identifier"]), str(created["secret"])


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}{API}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_alive(pgid: int) -> bool:
    """Whether any process of this process group still runs (zombies do not count)."""
    return any(fields[0] != b"Z" and int(fields[2]) == pgid for _pid, fields in process_stats())


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (0 when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def root_required() -> str | None:
    """Why a test needing root cannot run here, or None."""
    return None if os.geteuid() == 0 else "needs root (CI and development machines run as root)"
