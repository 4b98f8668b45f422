"""A run's artifacts between its last step and its end (docs/artifacts.md): collected, uploaded,
and only then the run's end journaled, so that a run is final only once its files are stored.

The phase is journaled in the run's journal directory as `artifacts.json` (written whole,
atomically): first the run's outcome as its steps left it, then the files collected (path,
size, SHA-256, JUnit counts) and, as each is stored, its path. A worker killed during the
phase finds the file when it restarts (worker/agent.py reopens every journal): the run's
steps are all ended, so the execution comes straight here, takes the outcome and the files
from the file and resumes their uploads where the server's `offset` says; the run ends once
they are stored. Nothing of this is sent to the master: the run's end is the only event, as for
a run without artifacts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from orchestra.worker import artifacts as collection
from orchestra.worker.artifacts import Collected, Refused
from orchestra.worker.journal import Journal
from orchestra.worker.uploads import ServerLink, Uploader, UploadFailed, read_chunk

log = logging.getLogger(__name__)
STATE = "artifacts.json"


class Source:
    """An artifact's file opened for its upload (under the workspace's descriptor), reopened
    and hashed again when it changed under the upload."""

    def __init__(self, root: int, item: Collected, owner: int | None) -> None:
        self.root = root
        self.item = item
        self.owner = owner
        self.descriptor = collection.open_file(root, collection.resolve_link(root, item.path))

    def read(self, offset: int, size: int, fresh: bool = False) -> tuple[bytes, str]:
        return read_chunk(self.descriptor, self.item.chunks)(offset, size, fresh)

    async def rehash(self) -> Collected:
        notes: list[str] = []
        old = self.descriptor
        self.descriptor = -1
        os.close(old)
        junit = self.item.junit is not None
        self.item = await asyncio.to_thread(self._take, junit, notes)
        self.descriptor = collection.open_file(
            self.root, collection.resolve_link(self.root, self.item.path)
        )
        return self.item

    def _take(self, junit: bool, notes: list[str]) -> Collected:
        return collection.take(self.root, self.item.path, self.owner, junit, notes)

    def close(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1


def load_state(journal: Journal) -> dict[str, Any] | None:
    try:
        text = (journal.directory / STATE).read_text()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        return None
    return state if isinstance(state, dict) and "status" in state else None


def save_state(journal: Journal, state: dict[str, Any]) -> None:
    path = journal.directory / STATE
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(state))
    os.replace(temporary, path)


async def finish(
    journal: Journal,
    status: str,
    reason: str | None,
    link: ServerLink | None,
    owner: int | None,
    note: Callable[[list[str]], None],
) -> tuple[str, str | None]:
    """Collect and upload the run's artifacts (or resume doing so); the run's outcome after
    them. `note` writes lines in the run's log."""
    state = load_state(journal)
    if state is None:
        rules = collection.selected(journal.assignment.artifacts, status)
        if not rules:
            return status, reason
        state = {"status": status, "reason": reason}
        save_state(journal, state)
    else:
        status, reason = str(state["status"]), state.get("reason")
        log.info("run %s: resuming its artifacts' uploads", journal.run)
    if "files" not in state:
        rules = collection.selected(journal.assignment.artifacts, status)
        found, notes = await asyncio.to_thread(collection.collect, journal.workspace, rules, owner)
        note(notes)
        state["files"] = [item.to_json() for item in found]
        state["stored"] = []
        save_state(journal, state)
    files = [Collected.from_json(item) for item in state["files"]]
    if not files:
        return status, reason
    if link is None:
        note(["artifacts: this worker has no server to upload them to"])
        return _failed(status, reason, UploadFailed("the worker cannot upload", "exception"))
    failure = await _upload(journal, state, files, link, owner, note)
    if failure is not None:
        return _failed(status, reason, failure)
    return status, reason


async def _upload(
    journal: Journal,
    state: dict[str, Any],
    files: list[Collected],
    link: ServerLink,
    owner: int | None,
    note: Callable[[list[str]], None],
) -> UploadFailed | None:
    """Upload what is not stored yet; the first failure (None when all are stored)."""
    stored: list[str] = state.setdefault("stored", [])
    first: UploadFailed | None = None
    count = size = 0
    try:
        root = collection.open_workspace(journal.workspace)
    except OSError as exc:
        failure = UploadFailed(f"artifacts: the workspace cannot be read: {exc.strerror}")
        note([failure.reason])
        return failure
    try:
        async with link.client() as client:
            uploader = Uploader(link, journal.run, client)
            for index, item in enumerate(files):
                if item.path in stored:
                    count, size = count + 1, size + item.size
                    continue
                try:
                    source = Source(root, item, owner)
                except Refused as exc:
                    note([f"artifacts: {item.path} refused: {exc}"])
                    continue
                try:
                    done = await uploader.upload(item, source.read, source.rehash)
                except UploadFailed as exc:
                    note([exc.reason])
                    first = first or exc
                    if exc.status == "exception":
                        break  # the server will take none of them
                    continue
                except Refused as exc:  # changed under the upload into something not taken
                    note([f"artifacts: {item.path} refused: {exc}"])
                    continue
                finally:
                    source.close()
                files[index] = done
                state["files"][index] = done.to_json()
                stored.append(done.path)
                save_state(journal, state)
                count, size = count + 1, size + done.size
    finally:
        os.close(root)
    if count:
        note([f"artifacts: {count} file{'s' if count != 1 else ''} stored ({_size(size)})"])
    return first


def _failed(status: str, reason: str | None, failure: UploadFailed) -> tuple[str, str | None]:
    """The run's outcome when an upload failed: a run that succeeded ends as the upload says,
    with its reason; one that did not keeps its status (and its reason, if it had one)."""
    if status == "succeeded":
        return failure.status, failure.reason
    return status, reason or failure.reason


def _size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"
