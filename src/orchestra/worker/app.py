"""The composition root of `orchestra worker`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from orchestra.worker import cpu_policy
from orchestra.worker.agent import Agent, WorkerOptions

__all__ = ["WorkerOptions", "run_worker"]


def run_worker(options: WorkerOptions) -> None:
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
