"""Triggers committed in groups: the runs of the trigger requests waiting at the same moment
go into the database in one transaction (a group commit).

A trigger is a short write, and with many clients at once most of its cost was the
transaction around it: beginning, committing, reading the job, and two statements for the run
and its steps. Here a request joins the queue and waits for the transaction its run went in;
the first request of a quiet moment starts one at once (no delay is added), and those that
arrive while it runs go together in the next, sharing its job reads, one statement for all
their runs and one for all their steps. A request answered 201 has its run committed, as
before.

A request that cannot be honoured (no such job, parameters that do not fit) fails alone, before
anything of it is written. Should the group's transaction fail anyway (a job deleted at that
moment breaks a foreign key), its requests are tried again one by one, each in a transaction
of its own, so that one cannot fail another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestra.domain.models import Row, Run
from orchestra.errors import OrchestraError
from orchestra.storage import runs as run_storage

if TYPE_CHECKING:
    from orchestra.services.runs import RunService

log = logging.getLogger(__name__)
GROUP_MAX = 64  # runs in one transaction at most


@dataclass(eq=False)
class _Request:
    project: str
    job: str
    parameters: object
    source: Mapping[str, Any]
    priority: object
    answer: asyncio.Future[Run]


class TriggerQueue:
    def __init__(self, runs: RunService, committed: Callable[[], None]) -> None:
        self.runs = runs
        self.committed = committed  # called after each transaction that created runs
        self._waiting: list[_Request] = []
        self._committer: asyncio.Task[None] | None = None

    async def trigger(
        self,
        project: str,
        job: str,
        parameters: object,
        source: Mapping[str, Any],
        priority: object = None,
    ) -> Run:
        loop = asyncio.get_running_loop()
        request = _Request(project, job, parameters, source, priority, loop.create_future())
        self._waiting.append(request)
        committer = self._committer
        if committer is None or committer.done() or committer.get_loop() is not loop:
            self._committer = loop.create_task(self._commit_waiting())
        return await request.answer

    async def _commit_waiting(self) -> None:
        group: list[_Request] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:GROUP_MAX], self._waiting[GROUP_MAX:]
                group = [r for r in group if not r.answer.done()]  # given up on: dropped
                if group and await self._commit_group(group):
                    self.committed()
        except BaseException as error:  # cancelled with the server: nobody is left waiting
            for request in [*group, *self._waiting]:
                _fail(request, error)
            self._waiting = []
            raise

    async def _commit_group(self, group: list[_Request]) -> int:
        """The group in one transaction, or one by one if that fails; how many runs it made."""
        try:
            return await self._commit(group)
        except Exception as error:
            if len(group) == 1:
                _fail(group[0], error)
                return 0
            log.info("a group of %d triggers failed (%s); one by one", len(group), error)
        created = 0
        for request in group:
            try:
                created += await self._commit([request])
            except Exception as alone:
                _fail(request, alone)
        return created

    async def _commit(self, group: list[_Request]) -> int:
        """Insert the group's runs in one transaction; answer each request after the commit.
        A request that cannot be honoured is answered with its error and writes nothing."""
        prepared: list[tuple[_Request, dict[str, Any], list[dict[str, Any]]]] = []
        failed: list[tuple[_Request, Exception]] = []
        async with self.runs.db.transaction() as conn:
            jobs: dict[tuple[str, str], Row | None] = {}
            warnings: dict[str, str | None] = {}
            for request in group:
                try:
                    values, steps = await self.runs.pending_run(
                        conn,
                        request.project,
                        request.job,
                        request.parameters,
                        request.source,
                        request.priority,
                        jobs=jobs,
                        warnings=warnings,
                    )
                except OrchestraError as refused:  # its own: nothing of it written
                    failed.append((request, refused))
                    continue
                prepared.append((request, values, steps))
            stored = await run_storage.insert_runs(
                conn, [(values, steps) for _, values, steps in prepared], stored=True
            )
        for request, refusal in failed:
            _fail(request, refusal)
        for (request, _, _), run in zip(prepared, stored, strict=True):
            if not request.answer.done():
                request.answer.set_result(run)
        return len(stored)


def _fail(request: _Request, error: BaseException) -> None:
    if request.answer.done():
        return
    if isinstance(error, asyncio.CancelledError):
        request.answer.cancel()
        return
    request.answer.set_exception(error)
    request.answer.exception()  # marked retrieved: a request given up on logs nothing more
