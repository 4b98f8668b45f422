"""A run's log read with its lines' times: prefixed by them (`?timestamps=true`), searched
(`?search=`), or as timed chunks for the website's log view.

Built beside services/runs.py's plain reads, which stay the default and unchanged: the same
rights (the run is looked up in its project first, 404 if the caller's project has no such run),
the same positions (`offset` into the run's log, or into one step's), the same following of a
running run until it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestra.domain.log_lines import LineSplitter, TimedChunk, Timestamper, grep_line, matches
from orchestra.errors import InvalidInput
from orchestra.services.runs import FOLLOW_POLL_SECONDS, RunService
from orchestra.storage import log_times
from orchestra.storage import runs as run_storage

MAX_SEARCH_LENGTH = 200


class RunLogs:
    def __init__(self, runs: RunService) -> None:
        self.runs = runs

    async def timed_chunks(
        self,
        project: str,
        identifier: str,
        offset: int = 0,
        step: int | None = None,
        *,
        follow: bool = False,
    ) -> AsyncIterator[TimedChunk]:
        """The log (or one step's) from byte `offset` as chunks with their times, each cut to
        start at or after `offset`; with `follow`, until the run ends."""
        start = await self.runs.log_start(project, identifier, offset, step)
        return self._chunks(identifier, start, step, follow=follow)

    async def timestamped(
        self,
        project: str,
        identifier: str,
        offset: int = 0,
        step: int | None = None,
        *,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """The log with each line's time before it (domain/log_lines.py `stamp`)."""
        chunks = await self.timed_chunks(project, identifier, offset, step, follow=follow)
        return _timestamped(chunks)

    async def search(
        self, project: str, identifier: str, needle: str, step: int | None = None
    ) -> AsyncIterator[bytes]:
        """The lines of the log (or of one step's) holding `needle`, ignoring case and escape
        sequences, as `NUMBER:TEXT` lines (numbered from 1 in the log read)."""
        if not needle or len(needle) > MAX_SEARCH_LENGTH:
            raise InvalidInput(f"search must be 1 to {MAX_SEARCH_LENGTH} characters")
        chunks = await self.timed_chunks(project, identifier, 0, step)
        return _searched(chunks, needle)

    async def _chunks(
        self, identifier: str, offset: int, step: int | None, *, follow: bool
    ) -> AsyncIterator[TimedChunk]:
        db, events = self.runs.db, self.runs.events
        while True:
            async with db.read() as conn:
                # Status first, as services/runs.py reads it: output is stored before (or
                # with) the final status.
                finished = True
                if follow:
                    run = await run_storage.get_run(conn, identifier)
                    finished = run is None or run.status.is_final
                chunks = await log_times.read_timed_chunks(conn, identifier, offset, step)
            for chunk_offset, data, date in chunks:
                skip = max(0, offset - chunk_offset)
                yield chunk_offset + skip, data[skip:], date
                offset = chunk_offset + len(data)
            if chunks:
                continue
            if not follow or finished:
                return
            await events.wait(f"run:{identifier}", FOLLOW_POLL_SECONDS)


async def _timestamped(chunks: AsyncIterator[TimedChunk]) -> AsyncIterator[bytes]:
    stamper = Timestamper()
    async for _, data, date in chunks:
        out = stamper.feed(data, date)
        if out:
            yield out


async def _searched(chunks: AsyncIterator[TimedChunk], needle: str) -> AsyncIterator[bytes]:
    splitter = LineSplitter()
    async for _, data, date in chunks:
        found = b"".join(
            grep_line(line) for line in splitter.feed(data, date) if matches(line, needle)
        )
        if found:
            yield found
    last = splitter.rest()
    if last is not None and matches(last, needle):
        yield grep_line(last)
