"""The spawner: a small process that starts job steps and outlives the worker agent.

The agent asks it (JSON lines on stdin) to start a step; it starts the process in its own
session with stdout and stderr going to the step's log file, answers with the pid, and when the
process ends writes its exit status to a file, atomically, and says so on stdout. If the agent
dies, the spawner keeps waiting for its children and writing their exit files, then exits, so
a restarted agent finds every step's output and exit status on disk.

Run as `python -m orchestra.worker.spawner`; it imports nothing from the rest of Orchestra.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
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


def _watch(process: subprocess.Popen[bytes], exit_path: str) -> None:
    code = process.wait()
    _say({"pid": process.pid, "exit": code})
    # The file is for an agent that restarts: keep trying while the disk is full.
    while True:
        try:
            _write_exit(exit_path, code)
            return
        except OSError:
            time.sleep(1.0)


def _spawn(request: dict[str, Any], watchers: list[threading.Thread]) -> None:
    ident = request.get("id")
    try:
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
            )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _say({"id": ident, "error": f"cannot start {request['argv'][0]!r}: {reason}"})
        return
    except (KeyError, TypeError, ValueError) as exc:
        _say({"id": ident, "error": f"invalid spawn request: {exc}"})
        return
    _say({"id": ident, "pid": process.pid})
    watcher = threading.Thread(target=_watch, args=(process, request["exit"]), daemon=False)
    watcher.start()
    watchers.append(watcher)


def main() -> None:
    # Ctrl-C in the agent's terminal must not take the spawner (and its bookkeeping) with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watchers: list[threading.Thread] = []
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if isinstance(request, dict):
            _spawn(request, watchers)
        watchers[:] = [w for w in watchers if w.is_alive()]
    for watcher in watchers:
        watcher.join()


if __name__ == "__main__":
    main()
