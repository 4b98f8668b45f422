"""A step's results file on the worker: made before the step starts, read after it ends.

Each step gets `ORCHESTRA_RESULTS`: the path of an empty file of its own,
`<data dir>/results/<run>.<step>` (mode 0600, the steps' user's with --run-as). The directory is
the worker's (0700, or 0711 with --run-as so that the steps' user can reach its files without
listing them): a step can write its file, not replace it by a link, nor touch another's. A
sandboxed step sees it at the same path (worker/sandbox.py binds it). The path depends only on
the run and the step, so an agent that restarts while a step runs reads the same file when
the step ends.

After the step, the file is read once (at most the run's limit and a byte), never following a
link, only if it is a regular file of the steps' user; then it is removed. What it holds is
parsed and bounded by domain/results.py; the parsed results are journaled with the step's end
and sent with it (protocol/messages.py StepEnded.results).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestra.domain.results import (
    MAX_RESULTS_BYTES,
    MalformedResults,
    check_total,
    merge_results,
    parse_results,
)
from orchestra.worker.run_as import RunAs

DIRECTORY = "results"


def results_path(journal_directory: Path, run: str, step: int) -> Path:
    """The results file of a step of the run journaled in `journal_directory`
    (<data dir>/runs/<run>): <data dir>/results/<run>.<step>."""
    return journal_directory.parent.parent / DIRECTORY / f"{run}.{step}"


def prepare(path: Path, run_as: RunAs | None) -> None:
    """An empty results file at `path`, the steps' user's, in a directory only the worker may
    change (OSError if the disk refuses)."""
    directory = path.parent
    directory.mkdir(mode=0o700, exist_ok=True)
    wanted = 0o711 if run_as is not None else 0o700
    if stat.S_IMODE(directory.stat().st_mode) != wanted:
        directory.chmod(wanted)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if run_as is not None:
            os.fchown(descriptor, run_as.uid, run_as.gid)
    finally:
        os.close(descriptor)


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def collect(
    path: Path, run_as: RunAs | None, earlier: Mapping[str, str] | None
) -> tuple[dict[str, str] | None, str | None]:
    """The results a step left at `path` (None when it wrote none) and why they cannot be
    taken (None when they can), given the run's results from its earlier steps (`earlier`);
    the file is removed."""
    try:
        data = _read(path, os.geteuid() if run_as is None else run_as.uid)
    except MalformedResults as exc:
        return None, str(exc)
    finally:
        discard(path)
    if not data:
        return None, None
    try:
        results = parse_results(data)
        check_total(merge_results(earlier, results))
    except MalformedResults as exc:
        return None, str(exc)
    return results or None, None


def _read(path: Path, owner: int) -> bytes:
    """At most the run's limit and a byte of the file; b"" when there is none."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise MalformedResults(
            f"the results file cannot be read: {exc.strerror} (it must stay a plain file)"
        ) from None
    try:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode) or found.st_uid != owner:
            raise MalformedResults(
                "the results file was replaced by something other than a plain file of the "
                "step's user"
            )
        chunks: list[bytes] = []
        left = MAX_RESULTS_BYTES + 1
        while left > 0:
            chunk = os.read(descriptor, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def journaled_results(events: Iterable[Mapping[str, Any]]) -> dict[str, str] | None:
    """A run's results so far, from its journaled step ends, in order."""
    merged: dict[str, str] | None = None
    for event in events:
        if event.get("kind") == "step_ended" and event.get("results"):
            merged = merge_results(merged, event["results"])
    return merged
