"""The composition root of `orchestra worker`."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable

from orchestra.worker import cpu_policy
from orchestra.worker.agent import Agent, WorkerOptions

__all__ = ["WorkerOptions", "run_worker"]
log = logging.getLogger(__name__)
PR_SET_DUMPABLE = 4


def run_worker(options: WorkerOptions) -> None:
    not_dumpable()
    # The worker's files (journals, logs of steps) are its own; its steps get the umask it
    # was started with.
    options.step_umask = os.umask(0o077)
    cpu_policy.yield_on_wakeup()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code = runner.run(Agent(options).run())
    if code:
        raise SystemExit(code)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (uvicorn[standard] brings it, and the server
    runs on it): the agent's work per run is mostly small reads and writes on its connection
    and its spawner's pipes, which uvloop's transports do in C."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def not_dumpable() -> None:
    """Make this process non-dumpable (prctl PR_SET_DUMPABLE 0): its /proc/PID/environ, its
    memory and its file descriptors can then be read by no other process of its user (the
    token is in its memory), only by root. The spawner and the steps, started by exec, are
    dumpable again, and hold no token."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            log.warning("cannot make the worker non-dumpable: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.warning("cannot make the worker non-dumpable: %s", exc)
