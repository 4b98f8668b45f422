"""The spawner: a small process that starts job steps and outlives the worker agent.

The agent asks it (JSON lines on stdin) to start a step; it starts the process in its own
session with stdout and stderr going to the step's log file (under the request's resource
limits, in the request's cgroup: worker/limits.py), answers with the pid, and when the
process ends writes its exit status to a file, atomically, and says so on stdout. If the agent
dies, the spawner keeps waiting for its children and writing their exit files, then exits, so
a restarted agent finds every step's output and exit status on disk.

Run as `python -m orchestra.worker.spawner`; it imports nothing from the rest of Orchestra.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_out_lock = threading.Lock()
# The agent's environment, inherited: a step's is this plus the variables its request adds.
_ENVIRONMENT = dict(os.environ)


def _say(message: dict[str, Any]) -> None:
    with _out_lock:
        try:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the agent is gone; the exit file is what matters


def _write_exit(path: str, code: int) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        handle.write(str(code))
        handle.flush()
    # Renamed into place whole; not fsynced: what this guards against is the agent's death, and
    # the page cache survives that. A machine crash loses the worker's runs to the lease anyway.
    os.replace(temporary, path)


def _record_exit(pid: int, code: int, exit_path: str) -> None:
    _say({"pid": pid, "exit": code})
    try:
        _write_exit(exit_path, code)
    except OSError:
        # The file is for an agent that restarts: keep trying while the disk is full, without
        # holding up the other steps' exits.
        threading.Thread(target=_retry_exit, args=(exit_path, code), daemon=False).start()


def _retry_exit(exit_path: str, code: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            _write_exit(exit_path, code)
            return
        except OSError:
            pass


class Reaper:
    """One thread waits for every step (any child, as it ends) instead of a thread per step,
    which cost a thread's start and end per run. A step that ends before it is registered
    (the reaper got to it first) is kept until it is."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._children: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        self._early: dict[int, int] = {}  # pid -> exit code, ended before being registered
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=False)
        self._thread.start()

    def add(self, process: subprocess.Popen[bytes], exit_path: str) -> None:
        with self._changed:
            code = self._early.pop(process.pid, None)
            if code is None:
                self._children[process.pid] = (process, exit_path)
                self._changed.notify()
                return
        process.returncode = code  # reaped here: Popen must not wait for it
        _record_exit(process.pid, code, exit_path)

    def close(self) -> None:
        """No more steps will come: return once every one started has ended."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._children:
                    if self._closing:
                        return
                    self._changed.wait()
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                self._lost()
                continue
            code = os.waitstatus_to_exitcode(status)
            with self._changed:
                child = self._children.pop(pid, None)
                if child is None:
                    self._early[pid] = code
                    continue
            process, exit_path = child
            process.returncode = code
            _record_exit(pid, code, exit_path)

    def _lost(self) -> None:
        """Registered steps that are no children to wait for (something else reaped them):
        their exit status is lost, which the agent reports as such; nothing is invented."""
        with self._changed:
            lost = list(self._children)
            self._children.clear()
        for pid in lost:
            _say({"pid": pid, "exit": None})
        time.sleep(0.05)


def _spawn(request: dict[str, Any], reaper: Reaper) -> None:
    ident = request.get("id")
    cgroup = -1
    try:
        if request.get("cgroup"):
            cgroup = os.open(request["cgroup"], os.O_WRONLY | os.O_CLOEXEC)
        prepare = _preparation(request.get("rlimits") or {}, cgroup)
        with open(request["log"], "ab", buffering=0) as log:
            process = subprocess.Popen(
                request["argv"],
                cwd=request["cwd"],
                env={**_ENVIRONMENT, **request["variables"]},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                preexec_fn=prepare,  # a system call per limit: safe beside the reaper thread
            )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _say({"id": ident, "error": f"cannot start {request['argv'][0]!r}: {reason}"})
        return
    except subprocess.SubprocessError as exc:
        _say({"id": ident, "error": f"cannot apply the step's limits: {exc}"})
        return
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        _say({"id": ident, "error": f"invalid spawn request: {exc}"})
        return
    finally:
        if cgroup >= 0:
            os.close(cgroup)
    _say({"id": ident, "pid": process.pid})
    reaper.add(process, request["exit"])


def _preparation(rlimits: dict[str, list[int]], cgroup: int) -> Callable[[], None] | None:
    """What the child does before it starts the command: join the step's cgroup (writing 0
    to its cgroup.procs moves the writer), then set its resource limits, none above the
    spawner's own hard limits. None when there is nothing to do (the child is then started
    the fast way, without running Python between fork and exec)."""
    if not rlimits and cgroup < 0:
        return None
    limits = []
    for name, (soft, hard) in rlimits.items():
        kind = getattr(resource, name)
        _, current = resource.getrlimit(kind)
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
        limits.append((kind, (min(soft, hard), hard)))

    def prepare() -> None:
        if cgroup >= 0:
            os.write(cgroup, b"0")
        for kind, pair in limits:
            resource.setrlimit(kind, pair)

    return prepare


def _restore_policy(arguments: list[str]) -> None:
    """`--policy N`: the CPU scheduling policy the steps are to run under (the agent's own
    before it made itself SCHED_BATCH; see orchestra/worker/cpu_policy.py)."""
    if len(arguments) == 2 and arguments[0] == "--policy":
        try:
            os.sched_setscheduler(0, int(arguments[1]), os.sched_param(0))
        except (AttributeError, OSError, ValueError):
            pass


def main() -> None:
    # Ctrl-C in the agent's terminal must not take the spawner (and its bookkeeping) with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _restore_policy(sys.argv[1:])
    reaper = Reaper()
    try:
        for line in sys.stdin:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if isinstance(request, dict):
                _spawn(request, reaper)
    finally:
        reaper.close()


if __name__ == "__main__":
    main()
