"""The composition root of `orchestra worker`."""

from __future__ import annotations

import asyncio

from orchestra.worker.agent import Agent, WorkerOptions

__all__ = ["WorkerOptions", "run_worker"]


def run_worker(options: WorkerOptions) -> None:
    code = asyncio.run(Agent(options).run())
    if code:
        raise SystemExit(code)
