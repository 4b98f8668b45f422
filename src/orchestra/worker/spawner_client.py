"""The agent's side of the spawner: start it, ask it to start steps, learn of their exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestra.worker import cpu_policy
from orchestra.worker.run_as import RunAs

log = logging.getLogger(__name__)


class Spawner:
    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._requests: dict[int, asyncio.Future[tuple[int | None, str | None]]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._next = 0
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.run_as: RunAs | None = None  # the user its steps run as (None: the worker's)

    async def start(
        self,
        environment: Mapping[str, str],
        run_as: RunAs | None = None,
        umask: int | None = None,
    ) -> None:
        """Start the spawner with `environment`, the base of every step's; its steps run as
        `run_as` (None: the worker's own user) with `umask` (None: the worker's)."""
        self.run_as = run_as
        arguments = list(cpu_policy.spawner_arguments())
        if run_as is not None:
            arguments += ["--run-as", run_as.spawner_argument()]
        if umask is not None:
            arguments += ["--umask", f"{umask:o}"]
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchestra.worker.spawner",
            *arguments,
            env=dict(environment),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read())

    async def spawn(
        self,
        argv: Sequence[str],
        cwd: str,
        variables: Mapping[str, str],
        log_path: Path,
        exit_path: Path,
        limits: Mapping[str, object] | None = None,
        mask: Sequence[str] = (),
    ) -> tuple[int | None, str | None]:
        """Start a step, its environment the agent's (which the spawner inherited) plus
        `variables`, under `limits` (the request's fields of worker/limits.StepLimits), its
        output written to `log_path` with the values of `mask` masked (before they reach the
        disk); (pid, None) or (None, the reason it could not start)."""
        assert self._process is not None and self._process.stdin is not None
        self._next += 1
        ident = self._next
        future: asyncio.Future[tuple[int | None, str | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._requests[ident] = future
        request = {
            "id": ident,
            "argv": list(argv),
            "cwd": cwd,
            "variables": dict(variables),
            "log": str(log_path),
            "exit": str(exit_path),
            **(limits or {}),
        }
        if mask:
            request["mask"] = list(mask)
        async with self._lock:
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            await self._process.stdin.drain()
        pid, error = await future
        if pid is not None:
            self._exits.setdefault(pid, asyncio.get_running_loop().create_future())
        return pid, error

    async def wait(self, pid: int) -> int | None:
        """The exit status of a step this spawner started (None if the spawner died)."""
        future = self._exits.setdefault(pid, asyncio.get_running_loop().create_future())
        try:
            return await future
        finally:
            self._exits.pop(pid, None)

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "id" in message:
                future = self._requests.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result((message.get("pid"), message.get("error")))
            elif "exit" in message:
                exit_future = self._exits.setdefault(
                    message["pid"], asyncio.get_running_loop().create_future()
                )
                if not exit_future.done():
                    exit_future.set_result(message["exit"])
        log.error("the spawner exited")
        for request in self._requests.values():
            if not request.done():
                request.set_result((None, "the spawner exited"))
        for exit_future in self._exits.values():
            if not exit_future.done():
                exit_future.set_result(None)

    async def close(self) -> None:
        """Let the spawner go: it exits once the steps it started have ended."""
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
