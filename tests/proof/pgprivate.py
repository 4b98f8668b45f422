"""A PostgreSQL instance of the test's own, to stop and start at will.

The machine's cluster (`pg_lsclusters`: 15/main on port 5432) serves every other test running
here; stopping it would fail them. The restart scenarios therefore run the same PostgreSQL
binaries (`initdb`, `pg_ctl` of the installed version) on a data directory of their own, on a
port of its own, as the `postgres` user; `pg_ctl stop -m fast` and `-m immediate` are exactly
what `pg_ctlcluster ... stop -m ...` runs for a packaged cluster.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port


def _bin_dir() -> Path | None:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0),
    )
    return versions[-1].parent if versions else None


BIN = _bin_dir()


def unavailable() -> str | None:
    if BIN is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql"
    if os.geteuid() != 0:
        return "needs root (to run PostgreSQL as the postgres user)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user"
    if shutil.which("runuser") is None:
        return "no runuser"
    return None


class PrivatePostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orchestra-proof-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/"
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(
        self, tool: str, *arguments: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert BIN is not None
        argv = ["runuser", "-u", "postgres", "--", str(BIN / tool), *arguments]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} {arguments} failed: {done.stdout}{done.stderr}")
        return done

    def create(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.wait_ready()

    def stop(self, mode: str) -> None:
        """`pg_ctl stop -m fast` (clean shutdown) or `-m immediate` (a crash: recovery at the
        next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def ready(self) -> bool:
        argv = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-t", "2"]
        return self._run("pg_isready", *argv, check=False).returncode == 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL not ready after {timeout:g}s")
            time.sleep(0.1)

    def ensure_up(self) -> None:
        """Start it again if a test left it down, and wait until it accepts connections."""
        if not self.running():
            self.start()
        self.wait_ready()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
