"""What a run's steps leave running in the background ends with the run: a real worker, a step
that starts a child and exits at once, the child gone once the run has ended (it could
otherwise watch the runs that come after it on the same worker: docs/security.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.cluster import Cluster
from tests.support.waiting import wait_until

PYTHON = os.path.realpath(sys.executable)
# Starts a child that outlives the step (in the step's process group), writes its pid, exits.
LEAVE_BEHIND = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().split(b") ", 1)[-1][:1] != b"Z"
    except OSError:
        return False


def test_a_child_a_step_left_running_is_killed_when_its_run_ends(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    pid_file = tmp_path / "child.pid"
    command = [PYTHON, "-c", LEAVE_BEHIND.replace("{", "{{").replace("}", "}}"), str(pid_file)]
    cluster.api.put_job("j", [command, [PYTHON, "-c", "pass"]])
    cluster.start_worker("w1")
    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "succeeded")
    child = int(pid_file.read_text())
    wait_until(lambda: not alive(child), 10, "the step's child to be killed with its run")
