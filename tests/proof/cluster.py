"""The Cluster with what the proof scenarios add: workers inside a network namespace, extra
users and tokens, and the job every scenario runs."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import Process

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
    def start_agent(
        self,
        identifier: str,
        urls: Sequence[str] | None = None,
        *,
        netns: str | None = None,
        **options: Any,
    ) -> Process:
        """`orchestra worker` (`Cluster.start_worker`'s options), maybe inside a network
        namespace."""
        wrapper = ["ip", "netns", "exec", netns] if netns is not None else []
        return self.start_worker(identifier, urls=urls, wrapper=wrapper, **options)

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
