"""Collecting a run's artifacts in its workspace, after its steps (docs/artifacts.md).

Each entry of the job's `artifacts` is a glob relative to the workspace: `*`, `?` and `[...]`
match within one name (not a leading dot, unless the pattern's name starts with one), `**`
matches any number of folders. A folder matched gives every file under it. Nothing outside the
workspace is ever read:

- a glob that is absolute or has a `..` is refused (the master refuses them when the job is
  saved; a worker checks again);
- folders are walked and files opened from the workspace down, one name at a time, each opened
  with O_NOFOLLOW relative to its folder's descriptor: a name swapped for a symbolic link
  between the walk and the read fails to open instead of leading elsewhere;
- a symbolic link matched is taken as the file it points to only when that is a plain file
  inside the workspace reached without another link; one that leads out is refused with a line
  in the log, and links to folders are not followed;
- only plain files are taken (not devices, pipes or sockets), and with --run-as only the
  steps' user's files.

A glob that matches nothing is a line in the log. The files are hashed (SHA-256) as they are
found; JUnit reports (`report: junit`) are parsed here too (worker/junit.py).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestra.protocol.messages import AssignedArtifact
from orchestra.worker.junit import MAX_REPORT_BYTES, MalformedReport, parse_report

MAX_FILES = 10_000  # files collected for one run at most
MAX_DEPTH = 64  # folders walked below the workspace at most
READ_BYTES = 1 << 20
CHUNK_BYTES = 8 << 20  # an upload's chunks: at least 5 MiB (an S3 part) but the last, at most 16
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FAILURE_STATUSES = frozenset({"failed", "aborted", "exception"})


@dataclass
class Collected:
    """A file to upload: its path in the workspace (`/`-separated), size and SHA-256 as found,
    and the JUnit counts when it is a report that could be read."""

    path: str
    size: int
    sha256: str
    junit: dict[str, Any] | None = None
    # The SHA-256 of each chunk of CHUNK_BYTES, as found (not journaled: hashed again when the
    # upload resumes after a restart).
    chunks: list[str] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "chunks"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Collected:
        return cls(
            path=str(data["path"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            junit=data.get("junit"),
        )


class Refused(Exception):
    """A file that cannot be taken, and why (a line in the run's log)."""


def selected(rules: Sequence[AssignedArtifact] | None, status: str) -> list[AssignedArtifact]:
    """The entries that apply to a run that ended `status`."""
    failed = status in FAILURE_STATUSES
    return [
        rule for rule in rules or () if rule.when == "always" or (rule.when == "failure") == failed
    ]


def collect(
    workspace: Path, rules: Sequence[AssignedArtifact], owner: int | None
) -> tuple[list[Collected], list[str]]:
    """The files the entries match in `workspace` (each once, in the entries' order, hashed),
    and the lines to write in the run's log. `owner`: the only uid whose files are taken
    (the steps' user with --run-as), or None for any."""
    notes: list[str] = []
    found: dict[str, Collected] = {}
    try:
        root = os.open(workspace, _DIRECTORY_FLAGS)
    except OSError as exc:
        return [], [f"artifacts: the workspace cannot be read: {exc.strerror}"]
    try:
        for rule in rules:
            components, problem = split_glob(rule.path)
            if problem is not None:
                notes.append(f"artifacts: {rule.path!r} refused: {problem}")
                continue
            matched = 0
            for path in _matches(root, components):
                matched += 1
                if path in found:
                    continue
                if len(found) >= MAX_FILES:
                    notes.append(f"artifacts: more than {MAX_FILES} files; the rest are not kept")
                    return list(found.values()), notes
                try:
                    found[path] = take(root, path, owner, rule.report == "junit", notes)
                except Refused as exc:
                    notes.append(f"artifacts: {path} refused: {exc}")
            if matched == 0:
                notes.append(f"artifacts: {rule.path!r} matches no file")
    finally:
        os.close(root)
    return list(found.values()), notes


def split_glob(glob: str) -> tuple[list[str], str | None]:
    """A glob's names (without `.` and empty ones), or why it is refused."""
    if "\x00" in glob:
        return [], "it holds a NUL character"
    if glob.startswith("/") or glob.startswith("\\"):
        return [], "it is absolute (globs are relative to the workspace)"
    components = [c for c in glob.split("/") if c not in ("", ".")]
    if ".." in components:
        return [], "it leads out of the workspace ('..')"
    if not components:
        return [], "it names no file"
    return components, None


# Matching.


def _matches(root: int, components: list[str]) -> Iterator[str]:
    """Paths (relative, `/`-separated) of the files the glob's names match, folders matched
    expanded to the files under them. Symbolic links matched are given as they are (`_take`
    decides); links to folders are never walked through."""
    seen: set[str] = set()
    for path, is_directory in _walk(root, "", components, 0):
        if is_directory:
            for inner in _files_under(root, path):
                if inner not in seen:
                    seen.add(inner)
                    yield inner
        elif path not in seen:
            seen.add(path)
            yield path


def _walk(
    directory: int, prefix: str, components: list[str], depth: int
) -> Iterator[tuple[str, bool]]:
    """(path, is a real folder) of what the names match under `directory` (at `prefix`)."""
    if depth > MAX_DEPTH:
        return
    name, rest = components[0], components[1:]
    if name == "**":
        if not rest:
            yield prefix.rstrip("/") or ".", True  # everything below
            return
        yield from _walk(directory, prefix, rest, depth)
        for entry in _entries(directory):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                yield from _descend(directory, prefix, entry.name, components, depth)
        return
    if _is_literal(name):
        try:
            found = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except OSError:
            return
        candidates = [(name, stat.S_ISDIR(found.st_mode))]
    else:
        candidates = [
            (entry.name, entry.is_dir(follow_symlinks=False))
            for entry in _entries(directory)
            if _name_matches(entry.name, name)
        ]
    for match, is_directory in sorted(candidates):
        if not rest:
            yield prefix + match, is_directory
        elif is_directory:
            yield from _descend(directory, prefix, match, rest, depth)


def _descend(
    directory: int, prefix: str, name: str, components: list[str], depth: int
) -> Iterator[tuple[str, bool]]:
    try:
        inner = os.open(name, _DIRECTORY_FLAGS, dir_fd=directory)
    except OSError:
        return  # gone, or replaced by a link since it was listed
    try:
        yield from _walk(inner, f"{prefix}{name}/", components, depth + 1)
    finally:
        os.close(inner)


def _files_under(root: int, path: str) -> Iterator[str]:
    """Every name under the folder `path` that is not a folder (links included), walked
    without following links."""
    try:
        directory = _open_directory(root, path)
    except OSError:
        return
    prefix = "" if path == "." else path + "/"
    try:
        yield from _files_below(directory, prefix, 0)
    finally:
        os.close(directory)


def _files_below(directory: int, prefix: str, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        return
    for entry in sorted(_entries(directory), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            try:
                inner = os.open(entry.name, _DIRECTORY_FLAGS, dir_fd=directory)
            except OSError:
                continue
            try:
                yield from _files_below(inner, f"{prefix}{entry.name}/", depth + 1)
            finally:
                os.close(inner)
        else:
            yield prefix + entry.name


def _entries(directory: int) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as listing:
            return list(listing)
    except OSError:
        return []


def _is_literal(name: str) -> bool:
    return not any(c in name for c in "*?[")


def _name_matches(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False  # as a shell's glob: hidden names only when asked for
    return fnmatch.fnmatchcase(name, pattern)


# Reading.


def take(root: int, path: str, owner: int | None, junit: bool, notes: list[str]) -> Collected:
    """The file at `path`, hashed (and parsed when it is a JUnit report)."""
    descriptor = open_file(root, resolve_link(root, path))
    try:
        found = os.fstat(descriptor)
        if owner is not None and found.st_uid != owner:
            raise Refused("it is not the steps' user's file")
        whole, chunks, size = _hash(descriptor, found.st_size)
        collected = Collected(path, size, whole, chunks=chunks)
        if junit:
            collected.junit = _report(descriptor, size, path, notes)
        return collected
    finally:
        os.close(descriptor)


def _hash(descriptor: int, expected: int) -> tuple[str, list[str], int]:
    """The file's SHA-256, the SHA-256 of each of its upload chunks, and its size. A file of
    more than one chunk has its chunks hashed in a second thread while this one hashes the
    whole (hashlib lets go of the GIL): the upload then sends them without hashing again."""
    digest = hashlib.sha256()
    chunks: list[str] = []
    size = 0
    if expected <= CHUNK_BYTES:
        while piece := os.read(descriptor, READ_BYTES):
            digest.update(piece)
            size += len(piece)
        if size <= CHUNK_BYTES:
            return digest.hexdigest(), [digest.hexdigest()], size
        os.lseek(descriptor, 0, os.SEEK_SET)  # it grew: hashed again in chunks
        digest, size = hashlib.sha256(), 0
    with ThreadPoolExecutor(1, thread_name_prefix="artifact-chunks") as pool:
        pending: Future[str] | None = None
        while chunk := _read_full(descriptor, CHUNK_BYTES):
            if pending is not None:
                chunks.append(pending.result())
            pending = pool.submit(_sha256, chunk)
            digest.update(chunk)
            size += len(chunk)
            del chunk
        if pending is not None:
            chunks.append(pending.result())
    return digest.hexdigest(), chunks, size


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_full(descriptor: int, size: int) -> bytes:
    """`size` bytes (fewer at the end of the file)."""
    data = os.read(descriptor, size)
    if len(data) in (0, size):
        return data
    pieces = [data]
    left = size - len(data)
    while left and (more := os.read(descriptor, left)):
        pieces.append(more)
        left -= len(more)
    return b"".join(pieces)


def _report(descriptor: int, size: int, path: str, notes: list[str]) -> dict[str, Any] | None:
    if size > MAX_REPORT_BYTES:
        notes.append(
            f"artifacts: {path} is not read as a JUnit report: over {MAX_REPORT_BYTES >> 20} MiB"
        )
        return None
    os.lseek(descriptor, 0, os.SEEK_SET)
    with open(os.dup(descriptor), "rb", closefd=True) as source:
        try:
            return parse_report(source)
        except MalformedReport as exc:
            notes.append(f"artifacts: {path} is not a JUnit report that can be read: {exc}")
            return None


def resolve_link(root: int, path: str) -> str:
    """`path`, or the path in the workspace its symbolic link points to; Refused when the link
    leads out of the workspace."""
    parent, _, name = path.rpartition("/")
    try:
        directory = _open_directory(root, parent or ".")
    except OSError as exc:
        raise Refused(f"its folder cannot be opened: {exc.strerror}") from None
    try:
        try:
            target = os.readlink(name, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return path  # not a link
            raise Refused(f"it cannot be read: {exc.strerror}") from None
    finally:
        os.close(directory)
    if target.startswith("/"):
        raise Refused(f"it is a symbolic link to {target}, outside the workspace")
    resolved = posixpath.normpath(posixpath.join(parent, target))
    if resolved == ".." or resolved.startswith("../") or resolved == ".":
        raise Refused(f"it is a symbolic link to {target}, outside the workspace")
    return resolved


def open_file(root: int, path: str) -> int:
    """A descriptor of the plain file at `path` under the folder `root`, every name on the way
    opened without following links; Refused otherwise."""
    parent, _, name = path.rpartition("/")
    try:
        directory = _open_directory(root, parent or ".")
    except OSError as exc:
        raise Refused(_open_problem(exc)) from None
    try:
        descriptor = os.open(name, _FILE_FLAGS, dir_fd=directory)
    except OSError as exc:
        raise Refused(_open_problem(exc)) from None
    finally:
        os.close(directory)
    found = os.fstat(descriptor)
    if not stat.S_ISREG(found.st_mode):
        os.close(descriptor)
        raise Refused("it is not a plain file")
    os.set_blocking(descriptor, True)
    return descriptor


def open_workspace(workspace: Path) -> int:
    return os.open(workspace, _DIRECTORY_FLAGS)


def _open_directory(root: int, path: str) -> int:
    """The folder at `path` under `root`, each name opened without following links."""
    current = os.dup(root)
    for name in path.split("/"):
        if name in ("", "."):
            continue
        try:
            inner = os.open(name, _DIRECTORY_FLAGS, dir_fd=current)
        finally:
            os.close(current)
        current = inner
    return current


def _open_problem(exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "it is (or is reached through) a symbolic link (links are followed once, to a file)"
    if exc.errno == errno.ENOENT:
        return "it is gone"
    return f"it cannot be opened: {exc.strerror}"
