"""Where artifacts' bytes are kept, behind one small interface (docs/artifacts.md): a folder (the
default, under the data directory) or an S3-compatible object store (services/artifact_s3.py).

A stored file is under its run's identifier and its path (`RUN/PATH`), so that a run's files go
with one delete of its folder or prefix, and the runs a store holds can be listed to sweep the
ones whose run is gone. An upload in progress is staged (a file under `.uploads/`, or an S3
multipart upload) until its last byte is in and its SHA-256 checked. Bytes stream both ways in
pieces of at most READ_SIZE: memory stays flat whatever a file's size.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestra.errors import Conflict, InvalidInput, NotFound


class BadChunk(InvalidInput):
    """A chunk that is not what it says (its hash, its length), or not where it may be."""

    status_code = 400


READ_SIZE = 1 << 20  # a download's reads, and an upload's writes, are about this large
STAGING = ".uploads"


@dataclass
class Upload:
    """An upload in progress as the store needs it: its run and path, its staging key, the
    store's own upload (an S3 multipart upload's identifier) and the parts it holds
    ([number, etag] each)."""

    run: str
    path: str
    key: str
    store_upload: str | None = None
    parts: list[list[object]] = field(default_factory=list)


@dataclass
class Chunk:
    """A chunk's bytes as they arrive (`pieces`, `length` of them in all); `feed` sees each
    piece and `accept` says, once all are in, whether the chunk is whole and unaltered (its
    SHA-256): a chunk not accepted leaves nothing behind."""

    pieces: AsyncIterator[bytes]
    length: int
    feed: Callable[[bytes | bytearray], None]
    accept: Callable[[], bool]


class ArtifactStore(ABC):
    """The store's operations; every path given is checked (domain/artifacts.py check_path)."""

    description: str

    @abstractmethod
    async def begin(self, upload: Upload) -> None:
        """Start staging `upload` (sets its store_upload if the store has one)."""

    @abstractmethod
    async def write(self, upload: Upload, offset: int, chunk: Chunk) -> None:
        """Stage a chunk at `offset` (its part: len(upload.parts) + 1); InvalidInput if the
        chunk is not accepted. Appends the part to upload.parts where the store has parts."""

    @abstractmethod
    async def complete(self, upload: Upload, sha256: str | None) -> None:
        """Put the staged bytes in place as RUN/PATH. With `sha256` (when the bytes' hash was
        not followed as they came), check it first: InvalidInput (and nothing kept) if it
        differs."""

    @abstractmethod
    async def discard(self, upload: Upload) -> None:
        """Drop a staged upload (nothing if there is none)."""

    @abstractmethod
    def read(self, run: str, path: str, start: int, length: int) -> AsyncIterator[bytes]:
        """`length` bytes of RUN/PATH from `start`, in pieces."""

    @abstractmethod
    async def delete(self, run: str, path: str) -> None:
        """Delete one stored file (nothing if there is none)."""

    @abstractmethod
    async def delete_runs(self, runs: list[str]) -> None:
        """Delete every file and staged upload of these runs."""

    @abstractmethod
    async def stored_runs(self) -> list[str]:
        """The runs of which the store holds something (files or staged uploads)."""

    async def close(self) -> None:
        return None


async def sha256_of(pieces: AsyncIterator[bytes]) -> str:
    digest = hashlib.sha256()
    async for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


class FileStore(ArtifactStore):
    """Files under `root`: RUN/PATH, staged as .uploads/RUN.KEY; folders 0700, files 0600."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.description = f"file://{self.root}"

    def _staged(self, upload: Upload) -> Path:
        return self.root / STAGING / f"{upload.run}.{upload.key}"

    def _final(self, run: str, path: str) -> Path:
        final = self.root / run / path
        # The path was checked (no '..', not absolute); this holds it to the run's folder even so.
        if not final.resolve().is_relative_to(self.root / run):
            raise InvalidInput(f"path {path!r} leads out of the run's folder")
        return final

    async def begin(self, upload: Upload) -> None:
        def create() -> None:
            _folder(self.root / STAGING)
            fd = os.open(self._staged(upload), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)

        await asyncio.to_thread(create)

    async def write(self, upload: Upload, offset: int, chunk: Chunk) -> None:
        staged = self._staged(upload)
        try:
            fd = await asyncio.to_thread(os.open, staged, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            raise Conflict(f"the upload of {upload.path!r} cannot be written: {exc}") from None
        try:
            position = offset
            pending = bytearray()
            # Hashed and written in a thread, a MiB at a time (hashlib lets go of the GIL).
            async for piece in chunk.pieces:
                pending += piece
                if len(pending) >= READ_SIZE:
                    position += await asyncio.to_thread(
                        _feed_and_write, chunk.feed, fd, pending, position
                    )
                    pending.clear()
            if pending:
                position += await asyncio.to_thread(
                    _feed_and_write, chunk.feed, fd, pending, position
                )
            accepted = position - offset == chunk.length and chunk.accept()
            # What is past the chunk (a cut chunk's bytes, from before) is dropped either way.
            await asyncio.to_thread(os.ftruncate, fd, position if accepted else offset)
        except BaseException:
            await asyncio.to_thread(os.ftruncate, fd, offset)
            raise
        finally:
            os.close(fd)
        if not accepted:
            raise BadChunk("the chunk's SHA-256 (X-Chunk-SHA256) does not match its bytes")

    async def complete(self, upload: Upload, sha256: str | None) -> None:
        staged = self._staged(upload)
        if sha256 is not None:
            held = await sha256_of(_read_file(staged, 0, None))
            if held != sha256:
                await self.discard(upload)
                raise InvalidInput("the file's SHA-256 does not match the one declared")
        final = self._final(upload.run, upload.path)

        def move() -> None:
            _folder(final.parent)
            os.replace(staged, final)

        try:
            await asyncio.to_thread(move)
        except OSError as exc:
            await self.discard(upload)
            raise Conflict(f"{upload.path!r} cannot be stored: {exc.strerror}") from None

    async def discard(self, upload: Upload) -> None:
        await asyncio.to_thread(_unlink, self._staged(upload))

    def read(self, run: str, path: str, start: int, length: int) -> AsyncIterator[bytes]:
        return _read_file(self._final(run, path), start, length)

    async def delete(self, run: str, path: str) -> None:
        await asyncio.to_thread(_unlink, self._final(run, path))

    async def delete_runs(self, runs: list[str]) -> None:
        def delete() -> None:
            staging = self.root / STAGING
            prefixes = tuple(f"{run}." for run in runs)
            if staging.is_dir() and prefixes:
                for entry in os.scandir(staging):
                    if entry.name.startswith(prefixes):
                        _unlink(Path(entry.path))
            for run in runs:
                shutil.rmtree(self.root / run, ignore_errors=True)

        await asyncio.to_thread(delete)

    async def stored_runs(self) -> list[str]:
        def scan() -> list[str]:
            if not self.root.is_dir():
                return []
            found = {e.name for e in os.scandir(self.root) if e.name != STAGING}
            staging = self.root / STAGING
            if staging.is_dir():
                found.update(e.name.split(".", 1)[0] for e in os.scandir(staging))
            return sorted(found)

        return await asyncio.to_thread(scan)


def _folder(folder: Path) -> None:
    """Make `folder` and its missing parents, private to the server's user (0700)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass


def _feed_and_write(
    feed: Callable[[bytes | bytearray], None], fd: int, data: bytearray, position: int
) -> int:
    feed(data)
    return _write_all(fd, data, position)


def _write_all(fd: int, data: bytearray, position: int) -> int:
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], position + written)
    return written


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def _read_file(path: Path, start: int, length: int | None) -> AsyncIterator[bytes]:
    try:
        handle = await asyncio.to_thread(open, path, "rb", buffering=0)
    except FileNotFoundError:
        raise NotFound(f"{path.name} is not stored") from None
    try:
        await asyncio.to_thread(handle.seek, start)
        left = length
        while left is None or left > 0:
            size = READ_SIZE if left is None else min(READ_SIZE, left)
            piece = await asyncio.to_thread(handle.read, size)
            if not piece:
                break
            if left is not None:
                left -= len(piece)
            yield piece
    finally:
        handle.close()
