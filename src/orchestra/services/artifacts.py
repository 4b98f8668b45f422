"""Artifacts (docs/artifacts.md): the upload protocol a worker follows to store a run's files, the
files listed and read, the space they take, and their deletion with their run.

An upload is declared (`begin`: path, size, SHA-256), then sent in chunks at the offset the server
holds (`put`), each with its own SHA-256; a chunk cut or altered leaves nothing, so the worker
resumes from the offset the server answers. The last chunk's arrival checks the whole file's
SHA-256 and records the artifact on the run. The whole file's hash is followed chunk after chunk
in this process (no second read); when another process took the earlier chunks, the store reads
the staged bytes back once to check it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain import artifacts as rules
from orchestra.domain.statuses import FINAL_RUN_STATUSES, RunStatus
from orchestra.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from orchestra.services.artifact_store import ArtifactStore, BadChunk, Chunk, Upload
from orchestra.services.users import Caller
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import artifact as artifact_table
from orchestra.storage.schema import artifact_upload as upload_table
from orchestra.storage.schema import run as run_table
from orchestra.storage.schema import worker as worker_table

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HASHERS = 256  # uploads whose whole-file hash this process follows
SWEEP_BATCH = 500
_FINAL = sorted(s.value for s in FINAL_RUN_STATUSES)
_SHOWN = (artifact_table.c.path, artifact_table.c.size, artifact_table.c.sha256)


class OffsetConflict(Conflict):
    """A chunk at another offset than the one the server holds: the client resumes from it."""

    def __init__(self, held: int) -> None:
        super().__init__(f"the server holds {held} bytes of this file: send from there")
        self.held = held


def run_key(identifier: str) -> str:
    """A run's identifier as stored (a UUID), else NotFound: it names a folder or a prefix."""
    if not isinstance(identifier, str) or not RUN_ID.match(identifier):
        raise NotFound(f"no run {identifier!r}")
    return identifier


class ArtifactService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        store: ArtifactStore,
        max_file_bytes: int,
        max_run_bytes: int,
    ) -> None:
        self.db = db
        self.clock = clock
        self.store = store
        self.max_file_bytes = max_file_bytes
        self.max_run_bytes = max_run_bytes
        # (run, path, key) -> (offset, the hash of the bytes before it)
        self._hashers: OrderedDict[tuple[str, str, str], tuple[int, Any]] = OrderedDict()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    # The upload protocol (worker side).

    async def begin(
        self, caller: Caller, run: str, path: object, size: object, sha256: object, junit: object
    ) -> int:
        """Declare an upload; the bytes the server holds of it (size: already stored)."""
        run = run_key(run)
        path = rules.check_path(path)
        sha256 = rules.check_sha256(sha256)
        counts = rules.parse_junit(junit)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput("size must be a whole number of bytes >= 0")
        if size > self.max_file_bytes:
            raise PayloadTooLarge(
                f"{path} is {size} bytes, over the limit of {self.max_file_bytes} bytes per file"
            )
        keys = {"run": run, "path": path}
        async with self.db.transaction() as conn:
            await self._check_uploader(conn, caller, run)
            stored = await records.fetch_one(conn, artifact_table, keys)
            if stored is not None and stored["sha256"] == sha256 and stored["size"] == size:
                return size
            held = await records.fetch_one(conn, upload_table, keys, for_update=True)
            if held is not None and held["sha256"] == sha256 and held["size"] == size:
                return int(held["offset"])
            others = sa.select(sa.func.coalesce(sa.func.sum(artifact_table.c.size), 0)).where(
                artifact_table.c.run == run, artifact_table.c.path != path
            )
            staged = sa.select(sa.func.coalesce(sa.func.sum(upload_table.c.size), 0)).where(
                upload_table.c.run == run, upload_table.c.path != path
            )
            total = int((await conn.execute(others)).scalar_one())
            total += int((await conn.execute(staged)).scalar_one())
            if total + size > self.max_run_bytes:
                raise PayloadTooLarge(
                    f"{path} ({size} bytes) would take the run's files to {total + size} bytes, "
                    f"over the limit of {self.max_run_bytes} bytes per run"
                )
            if held is not None:
                await records.delete(conn, upload_table, keys)
        if held is not None:
            await self.store.discard(_upload_of(held))
        upload = Upload(run, path, uuid.uuid4().hex)
        await self.store.begin(upload)
        async with self.db.transaction() as conn:
            await records.delete(conn, upload_table, keys)
            await records.insert(
                conn,
                upload_table,
                {
                    **keys,
                    "size": size,
                    "sha256": sha256,
                    "offset": 0,
                    "key": upload.key,
                    "store_upload": upload.store_upload,
                    "parts": [],
                    "junit": counts,
                },
            )
        return 0

    async def put(
        self,
        caller: Caller,
        run: str,
        path: object,
        offset: int,
        chunk_sha256: object,
        length: int,
        pieces: AsyncIterator[bytes],
    ) -> dict[str, Any]:
        """Store a chunk at `offset`: {"offset": held} (with "complete": true at the end)."""
        run = run_key(run)
        path = rules.check_path(path)
        digest_wanted = rules.check_sha256(chunk_sha256)
        if length > rules.MAX_CHUNK:
            raise PayloadTooLarge(f"a chunk is at most {rules.MAX_CHUNK} bytes")
        lock = self._locks.setdefault((run, path), asyncio.Lock())
        try:
            async with lock:
                return await self._put(caller, run, path, offset, digest_wanted, length, pieces)
        finally:
            if not lock.locked() and self._locks.get((run, path)) is lock:
                del self._locks[(run, path)]

    async def _put(
        self,
        caller: Caller,
        run: str,
        path: str,
        offset: int,
        digest_wanted: str,
        length: int,
        pieces: AsyncIterator[bytes],
    ) -> dict[str, Any]:
        keys = {"run": run, "path": path}
        async with self.db.read() as conn:
            await self._check_uploader(conn, caller, run)
            held = await records.fetch_one(conn, upload_table, keys)
            stored = None if held else await records.fetch_one(conn, artifact_table, keys)
        if held is None:
            if stored is not None and offset + length == stored["size"]:
                # The last chunk again (its answer was lost, or an empty file already stored).
                return {"offset": int(stored["size"]), "complete": True}
            raise NotFound(f"no upload of {path!r} in progress: declare it (POST) first")
        size = int(held["size"])
        if offset != held["offset"]:
            raise OffsetConflict(int(held["offset"]))
        end = offset + length
        if end > size:
            raise BadChunk(f"the chunk ends at byte {end}, past the file's {size} bytes")
        if end < size and length < rules.MIN_CHUNK:
            raise BadChunk(f"every chunk but the last is at least {rules.MIN_CHUNK} bytes")
        upload = _upload_of(held)
        followed = (run, path, upload.key)
        whole: Any = None
        if offset == 0:
            whole = hashlib.sha256()
        elif (cached := self._hashers.get(followed)) is not None and cached[0] == offset:
            whole = cached[1].copy()
        chunk_digest = hashlib.sha256()

        def feed(piece: bytes | bytearray) -> None:
            chunk_digest.update(piece)
            if whole is not None:
                whole.update(piece)

        chunk = Chunk(pieces, length, feed, lambda: chunk_digest.hexdigest() == digest_wanted)
        await self.store.write(upload, offset, chunk)
        async with self.db.transaction() as conn:
            moved = await records.update(
                conn,
                upload_table,
                keys,
                {"offset": end, "parts": upload.parts},
                where=sa.and_(upload_table.c.key == upload.key, upload_table.c.offset == offset),
            )
        if not moved:  # another request took this offset meanwhile
            current = await self._held(run, path)
            raise OffsetConflict(current)
        if whole is not None:
            self._hashers[followed] = (end, whole)
            self._hashers.move_to_end(followed)
            while len(self._hashers) > HASHERS:
                self._hashers.popitem(last=False)
        else:
            self._hashers.pop(followed, None)
        if end < size:
            return {"offset": end}
        self._hashers.pop(followed, None)
        await self._complete(held, upload, whole)
        return {"offset": size, "complete": True}

    async def _complete(self, held: Mapping[str, Any], upload: Upload, whole: Any) -> None:
        keys = {"run": upload.run, "path": upload.path}
        sha256 = str(held["sha256"])
        try:
            if whole is not None and whole.hexdigest() != sha256:
                await self.store.discard(upload)
                raise InvalidInput("the file's SHA-256 does not match the one declared")
            await self.store.complete(upload, None if whole is not None else sha256)
        except (InvalidInput, Conflict):
            async with self.db.transaction() as conn:
                await records.delete(conn, upload_table, keys)
            raise
        async with self.db.transaction() as conn:
            await records.delete(conn, upload_table, keys)
            await conn.execute(
                artifact_table.delete().where(records.key_clause(artifact_table, keys))
            )
            await conn.execute(
                artifact_table.insert().values(
                    **keys, size=held["size"], sha256=sha256, creation_date=self.clock.now()
                )
            )
            if held["junit"]:
                query = sa.select(run_table.c.tests).where(run_table.c.identifier == upload.run)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                tests = (await conn.execute(query)).scalar_one_or_none()
                await conn.execute(
                    run_table.update()
                    .where(run_table.c.identifier == upload.run)
                    .values(tests=rules.add_tests(tests, held["junit"]))
                )
        log.info("artifact %s of run %s stored (%s bytes)", upload.path, upload.run, held["size"])

    async def _held(self, run: str, path: str) -> int:
        async with self.db.read() as conn:
            held = await records.fetch_one(conn, upload_table, {"run": run, "path": path})
        return 0 if held is None else int(held["offset"])

    async def _check_uploader(self, conn: AsyncConnection, caller: Caller, run: str) -> None:
        """Only the worker the run is assigned to (its owner's token), while it runs there."""
        query = (
            sa.select(run_table.c.project, run_table.c.status, worker_table.c.owner)
            .select_from(run_table)
            .outerjoin(worker_table, worker_table.c.identifier == run_table.c.worker)
            .where(run_table.c.identifier == run)
        )
        row = (await conn.execute(query)).first()
        if row is None or not caller.access.sees(row.project):
            raise NotFound(f"no run {run!r}")
        if row.owner is None or row.owner != caller.user.identifier:
            raise Forbidden("only the worker the run is assigned to uploads its artifacts")
        if row.status != RunStatus.RUNNING.value:
            raise Conflict(f"the run is {row.status}: artifacts are uploaded while it runs")

    # Reading.

    async def page(
        self, project: str, run: str, cursor: str | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        async with self.db.read() as conn:
            await self._check_run(conn, project, run)
            query = sa.select(*_SHOWN).where(artifact_table.c.run == run)
            rows, next_cursor = await records.page(
                conn, query, [artifact_table.c.path], cursor, limit
            )
        return [dict(r) for r in rows], next_cursor

    async def find(self, project: str, run: str, path: str) -> dict[str, Any]:
        """A stored file's row (NotFound if none)."""
        try:
            path = rules.check_path(path)
        except InvalidInput:
            raise NotFound(f"no artifact {path!r}") from None
        async with self.db.read() as conn:
            await self._check_run(conn, project, run)
            found = await records.fetch_one(conn, artifact_table, {"run": run, "path": path})
        if found is None:
            raise NotFound(f"no artifact {path!r} in run {run!r}")
        return dict(found)

    def read(self, run: str, path: str, start: int, length: int) -> AsyncIterator[bytes]:
        return self.store.read(run, path, start, length)

    async def _check_run(self, conn: AsyncConnection, project: str, run: str) -> None:
        run_key(run)
        found = await records.fetch_one(conn, run_table, {"identifier": run})
        if found is None or found["project"] != project:
            raise NotFound(f"no run {run!r} in project {project!r}")

    async def project_sizes(self, projects: list[str]) -> dict[str, int]:
        """The bytes the artifacts of each project's runs take (one query)."""
        if not projects:
            return {}
        query = (
            sa.select(run_table.c.project, sa.func.sum(artifact_table.c.size))
            .select_from(
                artifact_table.join(run_table, run_table.c.identifier == artifact_table.c.run)
            )
            .where(run_table.c.project.in_(projects))
            .group_by(run_table.c.project)
        )
        async with self.db.read() as conn:
            sizes = {p: int(s or 0) for p, s in (await conn.execute(query)).all()}
        return {p: sizes.get(p, 0) for p in projects}

    # Deletion with the runs.

    async def runs_deleted(self, runs: list[str]) -> None:
        """The files of runs just deleted from the database."""
        if runs:
            await self.store.delete_runs([r for r in runs if RUN_ID.match(r)])

    async def sweep_orphans(self) -> int:
        """Delete what the store holds of runs the database no longer has (a run deleted some
        other way than by retention, or a crash between the two deletes), and the uploads left
        unfinished by runs that ended. Returns how many runs' files went."""
        await self._drop_unfinished()
        stored = [r for r in await self.store.stored_runs() if RUN_ID.match(r)]
        gone: list[str] = []
        for start in range(0, len(stored), SWEEP_BATCH):
            batch = stored[start : start + SWEEP_BATCH]
            async with self.db.read() as conn:
                query = sa.select(run_table.c.identifier).where(run_table.c.identifier.in_(batch))
                present = set((await conn.execute(query)).scalars())
            gone += [r for r in batch if r not in present]
        if gone:
            await self.store.delete_runs(gone)
            log.info("artifacts: deleted the files of %d runs that are gone", len(gone))
        return len(gone)

    async def _drop_unfinished(self) -> None:
        """Uploads of runs that ended (no more chunks can come: a worker that never came back)."""
        query = (
            sa.select(upload_table)
            .join(run_table, run_table.c.identifier == upload_table.c.run)
            .where(run_table.c.status.in_(_FINAL))
            .limit(SWEEP_BATCH)
        )
        async with self.db.read() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        for row in rows:
            await self.store.discard(_upload_of(row))
            async with self.db.transaction() as conn:
                await records.delete(conn, upload_table, {"run": row["run"], "path": row["path"]})


def _upload_of(row: Mapping[str, Any]) -> Upload:
    return Upload(
        run=row["run"],
        path=row["path"],
        key=row["key"],
        store_upload=row["store_upload"],
        parts=[list(p) for p in row["parts"] or []],
    )
