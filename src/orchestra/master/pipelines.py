"""The pipelines loop: pipeline runs advanced by the masters, never by a worker.

A run of a pipeline that ends marks its pipeline run in the same transaction
(services/pipeline_marks.py). The master that ended it signals this loop after its commit, and
the loop advances the marked pipeline runs at once; otherwise it looks every POLL_SECONDS for
marks older than STALE_SECONDS (left by a master that died between its commit and its advance,
or by a process without a master). Each is locked as read, skipping those another master
holds, so two masters never advance the same pipeline run at the same time.
"""

from __future__ import annotations

from orchestra.services.container import Services
from orchestra.services.pipeline_marks import ADVANCE

POLL_SECONDS = 1.0
STALE_SECONDS = 1.0  # marks this old are anybody's: the in-process path normally wins before


class PipelineLoop:
    def __init__(self, services: Services) -> None:
        self.events = services.events
        self.pipeline_runs = services.pipeline_runs

    async def loop(self) -> None:
        """One turn: wait for a signal or the poll, advance what is marked."""
        signalled = await self.events.wait(ADVANCE, POLL_SECONDS)
        # Signalled after this process's commit, a mark is there: straight to the write
        # transaction (a look first would cost the hand-over a transaction). Otherwise, and
        # after a batch (a full one may have left more), a look first.
        peek = not signalled
        while await self.pipeline_runs.advance_marked(
            0.0 if signalled else STALE_SECONDS, peek=peek
        ):
            peek = True
