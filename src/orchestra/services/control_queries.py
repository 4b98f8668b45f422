"""What the master's control loop asks the database about the workers connected to it and
their runs: which were disabled or asked to disconnect, which runs to abort, which ended
elsewhere. Reads without a snapshot: each is a hint acted on at once and asked again later.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestra.storage import running
from orchestra.storage import workers as worker_storage
from orchestra.storage.engine import Database


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
            exceptions = await worker_storage.disabled_or_leaving(conn)
        flags = dict.fromkeys(wanted, (True, False))
        flags.update((w, f) for w, f in exceptions.items() if w in wanted)
        return flags

    async def runs_to_abort(self, workers: Iterable[str]) -> list[tuple[str, str]]:
        """(worker, run) pairs of running runs whose abort was requested."""
        wanted = set(workers)
        if not wanted:
            return []
        # Running runs are few (index on status); a list of every connected worker is not.
        async with self.db.autocommit() as conn:
            return [(w, r) for w, r in await running.to_abort(conn) if w in wanted]

    async def ended_among(self, runs: Iterable[str]) -> list[str]:
        """Those of these runs that are no longer running (forced or given up meanwhile)."""
        identifiers = list(runs)
        if not identifiers:
            return []
        async with self.db.autocommit() as conn:
            return await running.not_running_among(conn, identifiers)
