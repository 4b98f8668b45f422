"""A dispatch pass: pending runs read, matched to free executors and claimed, as one guarded
change, so that two masters (or a master paused and woken late) never both win a run.

The rules (order, caps, matching) are domain/dispatch.py's; the SQL is storage/dispatch.py's.
A pass takes one of three ways, each chosen from what the previous pass found:
- the general way: one transaction reads (and on PostgreSQL locks) the caps and the
  candidates, matches them and claims the matched ones;
- while the head of the queue has no capped run (PostgreSQL): the candidates read outside a
  transaction, then one claim whose guard also wants each run's job and project uncapped;
- while the head of the queue is plain, no cap, no properties, no sandbox (PostgreSQL): one
  statement
  that reads, claims and returns the runs with their steps.
docs/performance.md gives what each way saves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain.dispatch import DISPATCH_BATCH, Candidate, Caps, rank
from orchestra.domain.models import Run
from orchestra.services.events import Events
from orchestra.services.run_endings import RunEndings
from orchestra.storage import dispatch as dispatch_storage
from orchestra.storage.engine import Database

# Candidates -> (run to worker, whether executors are left free).
Match = Callable[[list[Candidate]], tuple[dict[str, str], bool]]


@dataclass(frozen=True)
class Dispatched:
    """What a dispatch pass read, matched and won. `full`: as many candidates as asked for
    were read (more may be pending); `more`: a full DISPATCH_BATCH was, and executors are
    still free (another pass may find more for them)."""

    candidates: list[Candidate]
    assignments: dict[str, str]
    won: list[Run]
    full: bool
    more: bool


class DispatchService:
    def __init__(
        self, db: Database, clock: Clock, events: Events, endings: RunEndings, master: str
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.endings = endings
        self.master = master
        # What the last pass found at the head of the queue (the first pass finds out).
        self._uncapped_head = False
        self._plain_head = False

    async def dispatch(self, batch: int, match: Match, plain: Sequence[str] = ()) -> Dispatched:
        """One dispatch pass: `batch` pending runs read (DISPATCH_BATCH when those were not
        enough: every one read, yet executors left free), given to workers by `match`, and
        claimed. `plain`: the free executors' workers in the order `match` fills them with
        runs any worker can take (domain/dispatch.py's `plain_order`), for the one-statement
        pass; worked out only when `plain_pass_next`."""
        now = self.clock.now()
        if plain and self.plain_pass_next:
            dispatched = await self._dispatch_plain(plain, now)
            if dispatched is not None:
                return dispatched
        if self._uncapped_head and self.db.one_statement_paths:
            async with self.db.autocommit() as conn:
                candidates, assignments, full, left, batch = await self._match_candidates(
                    conn, batch, match, Caps.none()
                )
                self._note_head(candidates)
                if self._uncapped_head:
                    won = await self._claim_in(conn, assignments, now, uncapped=True)
                    more = full and batch >= DISPATCH_BATCH and left
                    return Dispatched(candidates, assignments, won, full, more)
        async with self.db.transaction() as conn:
            caps = await dispatch_storage.read_caps(conn, lock=True)
            candidates, assignments, full, left, batch = await self._match_candidates(
                conn, batch, match, caps, lock=True
            )
            # No cap to check again: the candidates kept within them, in this transaction.
            won = await self._claim_in(conn, assignments, now)
        self._note_head(candidates)
        more = full and batch >= DISPATCH_BATCH and left
        return Dispatched(candidates, assignments, won, full, more)

    @property
    def plain_pass_next(self) -> bool:
        """Whether the next pass may be one statement (PostgreSQL, the head of the queue
        plain at the last pass): only then is `dispatch`'s `plain` worth working out."""
        return self._plain_head and self.db.one_statement_paths

    def _note_head(self, candidates: Sequence[Candidate]) -> None:
        self._uncapped_head = not any(c.capped for c in candidates)
        self._plain_head = self._uncapped_head and not any(c.properties for c in candidates)

    async def _dispatch_plain(self, workers: Sequence[str], now: datetime) -> Dispatched | None:
        """A pass in one statement; None when the head of the queue is not plain (nothing was
        claimed)."""
        async with self.db.autocommit() as conn:
            claimed = await dispatch_storage.claim_plain(conn, workers, self.master, now)
        if claimed.blocked:
            self._plain_head = False
            return None
        for run in claimed.won:
            self.events.publish(f"run:{run.identifier}")
        candidates = [Candidate(run.identifier, {}, run.project, run.job) for run in claimed.won]
        assignments = {run.identifier: run.worker or "" for run in claimed.won}
        # Not `more`: every free executor was offered a run, and the periodic pass (or the
        # next run to end) looks again for any a race left unclaimed.
        full = claimed.found > len(claimed.won)
        return Dispatched(candidates, assignments, claimed.won, full, False)

    async def _match_candidates(
        self, conn: AsyncConnection, batch: int, match: Match, caps: Caps, *, lock: bool = False
    ) -> tuple[list[Candidate], dict[str, str], bool, bool, int]:
        """Candidates read and matched: `batch` of them, or DISPATCH_BATCH when `batch` were
        read (more may be pending) and executors are still free. Returns the candidates, the
        assignments, whether the read was full, whether executors are left, and the batch."""
        while True:
            candidates = await self._candidates_in(conn, batch, caps.copy(), lock=lock)
            assignments, left = match(candidates)
            full = len(candidates) >= batch
            if batch >= DISPATCH_BATCH or not full or not left:
                return candidates, assignments, full, left, batch
            batch = DISPATCH_BATCH

    async def candidates(self, batch: int = DISPATCH_BATCH) -> list[Candidate]:
        """Pending runs that may start now, in dispatch order (domain/dispatch.py's `rank`).
        Runs of disabled jobs or projects, runs waiting out a retry delay and runs over a
        concurrency cap are left out."""
        # No snapshot needed: these are hints, which a claim checks again under its guard.
        async with self.db.autocommit() as conn:
            caps = await dispatch_storage.read_caps(conn)
            return await self._candidates_in(conn, batch, caps)

    async def _candidates_in(
        self, conn: AsyncConnection, batch: int, caps: Caps, *, lock: bool = False
    ) -> list[Candidate]:
        levels = await dispatch_storage.read_levels(conn, batch, self.clock.now(), lock=lock)
        return rank(levels, batch, caps)

    async def claim(
        self, assignments: Mapping[str, str], candidates: Mapping[str, Candidate] | None = None
    ) -> list[Run]:
        """Atomically give each pending run to its worker; returns the runs this master won
        (a run another master claimed first, or one a cap no longer allows, is not among
        them). `candidates` are the runs as `candidates()` found them: their project and job,
        for the caps, are read only for the others."""
        if not assignments:
            return []
        now = self.clock.now()
        async with self.db.transaction() as conn:
            caps = await dispatch_storage.read_caps(conn, lock=True)
            keys = {r: (c.project, c.job) for r, c in (candidates or {}).items()}
            unknown = [r for r in assignments if r not in keys]
            if unknown:
                keys.update(await dispatch_storage.run_keys(conn, unknown))
            allowed = {
                run_id: worker
                for run_id, worker in assignments.items()
                if run_id in keys and caps.take(*keys[run_id])
            }
            return await self._claim_in(conn, allowed, now)

    async def _claim_in(
        self,
        conn: AsyncConnection,
        assignments: Mapping[str, str],
        now: datetime,
        *,
        uncapped: bool = False,
    ) -> list[Run]:
        runs = await dispatch_storage.claim(conn, assignments, self.master, now, uncapped=uncapped)
        won = [runs[run_id] for run_id in assignments if run_id in runs]
        for run in won:
            self.events.publish(f"run:{run.identifier}")
        return won

    async def release(self, run_id: str) -> None:
        """Put back a run whose assignment could not be sent (nothing ran)."""
        async with self.db.transaction() as conn:
            await self.endings.requeue(conn, run_id)
        self.events.publish("dispatch")

    async def give_up(self, run_id: str, reason: str) -> None:
        """End a claimed run that cannot be sent (a secret it names is missing): `exception`."""
        async with self.db.transaction() as conn:
            await self.endings.give_up(conn, run_id, reason)
        self.events.publish("dispatch")
