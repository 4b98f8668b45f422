"""A run's artifacts moving between its workspace and the server, for its execution
(worker/execution.py): the needs' files fetched before its first step (worker/inputs.py), its
own collected and uploaded after its last (worker/artifact_phase.py). Either can be stopped by
an abort (`active` is the transfer under way), and each writes what it has to say at the end of
the run's log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from orchestra.protocol.messages import AssignedInput
from orchestra.worker import artifact_phase
from orchestra.worker import inputs as run_inputs
from orchestra.worker.journal import Journal
from orchestra.worker.spawner_client import Spawner
from orchestra.worker.uploads import ServerLink

log = logging.getLogger(__name__)
T = TypeVar("T")


class RunTransfers:
    def __init__(
        self,
        journal: Journal,
        link: ServerLink | None,
        spawner: Spawner,
        append_text: Callable[[int, str], None],
    ) -> None:
        self.journal = journal
        self.link = link
        self.spawner = spawner
        self.append_text = append_text
        self.active: asyncio.Future[Any] | None = None
        self.uploading = False  # `active` is the run's own artifacts' upload

    async def fetch_inputs(self, inputs: Sequence[AssignedInput]) -> str | None:
        """Why the needs' artifacts cannot be fetched (None once they are, or when an abort
        stopped the fetch)."""
        if self.link is None:
            return "this worker cannot fetch the artifacts of the run's needs"
        run_as = self.spawner.run_as
        try:
            said = await self._cancellable(
                run_inputs.fetch_inputs(self.journal.workspace, inputs, self.link, run_as)
            )
        except (run_inputs.InputFailed, OSError) as exc:
            return f"cannot fetch the artifacts of the run's needs: {exc}"
        if said is not None:
            log.info("run %s: %s", self.journal.run, said)
        return None

    async def artifacts(self, status: str, reason: str | None) -> tuple[str, str | None] | None:
        """The run's outcome once its artifacts are stored (None if an abort stopped them)."""
        run_as = self.spawner.run_as
        owner = None if run_as is None else run_as.uid
        self.uploading = True
        try:
            return await self._cancellable(
                artifact_phase.finish(self.journal, status, reason, self.link, owner, self.note)
            )
        finally:
            self.uploading = False

    async def _cancellable(self, work: Awaitable[T]) -> T | None:
        """`work`, which cancelling `active` stops: None when it did."""
        task = asyncio.ensure_future(work)
        self.active = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the execution itself is cancelled
            return None
        finally:
            self.active = None

    def note(self, lines: list[str]) -> None:
        """Lines of the worker's own at the end of the run's log (its last step's)."""
        if not lines:
            return
        started = [e["step"] for e in self.journal.events if e["kind"] == "step_started"]
        if not started:
            log.warning("run %s: %s", self.journal.run, "; ".join(lines))
            return
        self.append_text(max(started), "".join(f"[orchestra] {line}\n" for line in lines))
