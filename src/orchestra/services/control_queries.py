"""What the master's control loop asks the database about the workers connected to it and
their runs: which were disabled or asked to disconnect, which runs to abort, which ended
elsewhere. Reads without a snapshot: each is a hint acted on at once and asked again later.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from orchestra.domain.statuses import RunStatus
from orchestra.storage.engine import Database
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import worker as worker_table


class ControlQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def worker_flags(self, workers: Iterable[str]) -> dict[str, tuple[bool, bool]]:
        """(is_enabled, should_disconnect) of these workers."""
        wanted = set(workers)
        if not wanted:
            return {}
        # Only the exceptions are read (a master polls this for every connected worker; a
        # connected worker cannot be deleted, so the others are enabled and staying).
        async with self.db.autocommit() as conn:
            query = sa.select(
                worker_table.c.identifier,
                worker_table.c.is_enabled,
                worker_table.c.should_disconnect,
            ).where(
                sa.or_(
                    worker_table.c.is_enabled.is_(False),
                    worker_table.c.should_disconnect.is_(True),
                )
            )
            flags = dict.fromkeys(wanted, (True, False))
            for r in await conn.execute(query):
                if r.identifier in wanted:
                    flags[r.identifier] = (r.is_enabled, r.should_disconnect)
            return flags

    async def runs_to_abort(self, workers: Iterable[str]) -> list[tuple[str, str]]:
        """(worker, run) pairs of running runs whose abort was requested."""
        wanted = set(workers)
        if not wanted:
            return []
        # Running runs are few (index on status); a list of every connected worker is not.
        async with self.db.autocommit() as conn:
            query = sa.select(run_table.c.worker, run_table.c.identifier).where(
                run_table.c.status == RunStatus.RUNNING.value,
                run_table.c.should_abort.is_(True),
            )
            return [
                (r.worker, r.identifier) for r in await conn.execute(query) if r.worker in wanted
            ]

    async def ended_among(self, runs: Iterable[str]) -> list[str]:
        """Those of these runs that are no longer running (forced or given up meanwhile)."""
        identifiers = list(runs)
        if not identifiers:
            return []
        async with self.db.autocommit() as conn:
            query = sa.select(run_table.c.identifier).where(
                run_table.c.identifier.in_(identifiers),
                run_table.c.status != RunStatus.RUNNING.value,
            )
            return list((await conn.execute(query)).scalars())
