"""Triggers committed in groups (services/group_commit.py): the runs of the trigger requests waiting
at the same moment go into the database in one transaction, sharing its job reads, one
statement for all their runs and one for all their steps. A request answered 201 has its run
committed. A request that cannot be honoured (no such job, parameters that do not fit) fails
alone, before anything of it is written; should the group's transaction fail anyway (a job
deleted at that moment breaks a foreign key), its requests are tried again one by one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestra.domain.models import Row, Run
from orchestra.errors import OrchestraError
from orchestra.services.group_commit import GroupCommit, Waiting
from orchestra.storage import runs as run_storage
from orchestra.storage.engine import Database

GROUP_MAX = 64  # runs in one transaction at most


@dataclass(eq=False)
class _Request:
    project: str
    job: str
    parameters: object
    source: Mapping[str, Any]
    priority: object


# The columns and steps of a new pending run, or an OrchestraError that refuses it:
# RunService.pending_run (called with the connection, the request's fields, and the group's
# `jobs` and `warnings` caches as keywords).
PrepareRun = Callable[..., Awaitable[tuple[dict[str, Any], list[dict[str, Any]]]]]


class TriggerQueue:
    def __init__(self, db: Database, prepare: PrepareRun, committed: Callable[[], None]) -> None:
        self.db = db
        self.prepare = prepare
        self.committed = committed  # called after each transaction that created runs
        self._groups: GroupCommit[_Request, Run] = GroupCommit(
            self._commit, group_max=GROUP_MAX, what="triggers"
        )

    async def trigger(
        self,
        project: str,
        job: str,
        parameters: object,
        source: Mapping[str, Any],
        priority: object = None,
    ) -> Run:
        return await self._groups.submit(_Request(project, job, parameters, source, priority))

    async def _commit(self, group: list[Waiting[_Request, Run]]) -> None:
        """Insert the group's runs in one transaction; answer each request after the commit.
        A request that cannot be honoured is answered with its error and writes nothing."""
        prepared: list[tuple[Waiting[_Request, Run], dict[str, Any], list[dict[str, Any]]]] = []
        failed: list[tuple[Waiting[_Request, Run], Exception]] = []
        db = self.db
        # PostgreSQL inserts the group's runs and steps by one statement (atomic on its own)
        # and the jobs read before need no snapshot: no transaction, two round trips less.
        async with db.atomic_statements() as conn:
            jobs: dict[tuple[str, str], Row | None] = {}
            warnings: dict[str, str | None] = {}
            for waiting in group:
                request = waiting.item
                try:
                    values, steps = await self.prepare(
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
                    failed.append((waiting, refused))
                    continue
                prepared.append((waiting, values, steps))
            stored = await run_storage.insert_runs(
                conn, [(values, steps) for _, values, steps in prepared], stored=True
            )
        for waiting, refusal in failed:
            waiting.fail(refusal)
        for (waiting, _, _), run in zip(prepared, stored, strict=True):
            waiting.answer_with(run)
        if stored:
            self.committed()
