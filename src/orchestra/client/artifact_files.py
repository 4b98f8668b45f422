"""A run's artifacts written to a folder, safely whatever the server says: a path that is
absolute, has a `..` (or an empty or `.`) component or a backslash is refused, no file is
written through a symbolic link, and a file is complete (its SHA-256 checked) before it takes
its name."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from orchestra.client.errors import ClientError


class UnsafePath(ClientError):
    """An artifact's path that would lead out of the output folder."""


def target(output: Path, path: str) -> Path:
    """Where `path` goes under `output` (UnsafePath if it would lead out)."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in parts)
        or (len(parts[0]) > 1 and parts[0][1] == ":")
    ):
        raise UnsafePath(f"refused the artifact path {path!r}: it would lead out of {output}")
    return output.joinpath(*parts)


class Writer:
    """One artifact being written under `output`: its folders made without following links and
    a new temporary file beside its name (`add` each piece), renamed over the name by `finish`
    once whole and checked; `abandon` removes it."""

    def __init__(self, output: Path, path: str, sha256: str | None) -> None:
        root = output.resolve()
        self.path = path
        self.sha256 = sha256
        self.destination = target(root, path)
        folder = root
        for part in self.destination.relative_to(root).parts[:-1]:
            folder = folder / part
            try:
                folder.mkdir(mode=0o755)
            except FileExistsError:
                if folder.is_symlink() or not folder.is_dir():
                    raise UnsafePath(f"refused {path!r}: {folder} is not a plain folder") from None
        if self.destination.is_symlink():
            raise UnsafePath(f"refused {path!r}: {self.destination} is a symbolic link")
        self.temporary = self.destination.with_name(f".{self.destination.name}.{os.getpid()}.part")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        self.digest = hashlib.sha256()
        self.handle = os.fdopen(os.open(self.temporary, flags, 0o644), "wb")

    def add(self, piece: bytes) -> None:
        self.digest.update(piece)
        self.handle.write(piece)

    def finish(self) -> Path:
        self.handle.close()
        if self.sha256 is not None and self.digest.hexdigest() != self.sha256:
            self.abandon()
            raise ClientError(
                f"{self.path}: the bytes received do not match the artifact's SHA-256"
            )
        os.replace(self.temporary, self.destination)
        return self.destination

    def abandon(self) -> None:
        self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temporary)


def write(output: Path, path: str, pieces: Iterable[bytes], sha256: str | None) -> Path:
    """Write `pieces` as `path` under `output` (a Writer's way)."""
    writer = Writer(output, path, sha256)
    try:
        for piece in pieces:
            writer.add(piece)
        return writer.finish()
    except BaseException:
        writer.abandon()
        raise
