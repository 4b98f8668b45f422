"""A pipeline node's inputs: the artifacts of its direct needs' runs, put in its workspace
before its first step, each at the path it was collected from (docs/artifacts.md).

The master lists them in the assignment (`inputs`: run, project, path, size, SHA-256). Each
is downloaded with the worker's token through `GET /api/v1/projects/{p}/runs/{r}/artifacts/
{path}`, streamed to disk (a connection cut resumes with a Range request), checked against its
size and SHA-256, and only then put in place. It is written without following links: every
folder on the way is opened from the workspace down with O_NOFOLLOW (made when missing), the
file is written under a temporary name in its folder and renamed over the path, which replaces
whatever was there (a link included) instead of writing through it. With --run-as, the folders
made and the files are the steps' user's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import httpx

from orchestra.protocol.messages import AssignedInput
from orchestra.worker.artifacts import open_workspace, split_glob
from orchestra.worker.run_as import RunAs
from orchestra.worker.uploads import Retrying, ServerLink, UploadFailed, quoted

MAX_ATTEMPTS = 5  # downloads of one file that end damaged, or cut, before giving up
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
WRITE_BYTES = 1 << 20


class InputFailed(Exception):
    pass


async def fetch_inputs(
    workspace: Path, inputs: Sequence[AssignedInput], link: ServerLink, run_as: RunAs | None
) -> str:
    """Download every input into `workspace`; a line saying what was fetched. InputFailed
    (with the reason) when one cannot be."""
    workspace.mkdir(parents=True, exist_ok=True)
    root = open_workspace(workspace)
    total = 0
    try:
        async with link.client() as client:
            for item in inputs:
                await _fetch(client, link, root, item, run_as)
                total += item.size
    finally:
        os.close(root)
    count = len(inputs)
    return (
        f"fetched {count} artifact{'s' if count != 1 else ''} of this run's needs ({total} bytes)"
    )


async def _fetch(
    client: httpx.AsyncClient,
    link: ServerLink,
    root: int,
    item: AssignedInput,
    run_as: RunAs | None,
) -> None:
    components, problem = split_glob(item.path)
    if problem is not None or any(c == "**" or c.startswith("..") for c in components):
        raise InputFailed(f"artifact {item.path!r} of run {item.run}: not a path in the workspace")
    folder = _make_folders(root, components[:-1], run_as)
    name = components[-1]
    temporary = f".{name[:100]}.orchestra-{secrets.token_hex(6)}"
    try:
        descriptor = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=folder,
        )
        try:
            await _download(client, link, item, descriptor)
            os.fchmod(descriptor, 0o644)
            if run_as is not None:
                os.fchown(descriptor, run_as.uid, run_as.gid)
        finally:
            os.close(descriptor)
        try:
            os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        except OSError as exc:
            raise InputFailed(
                f"artifact {item.path} of run {item.run} cannot be put in the workspace: "
                f"{exc.strerror}"
            ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        raise
    finally:
        os.close(folder)


def _make_folders(root: int, names: list[str], run_as: RunAs | None) -> int:
    current = os.dup(root)
    for name in names:
        try:
            try:
                inner = os.open(name, _DIRECTORY_FLAGS, dir_fd=current)
            except FileNotFoundError:
                os.mkdir(name, 0o755, dir_fd=current)
                inner = os.open(name, _DIRECTORY_FLAGS, dir_fd=current)
                if run_as is not None:
                    os.fchown(inner, run_as.uid, run_as.gid)
        except OSError as exc:
            os.close(current)
            why = (
                "a symbolic link or a file is in the way"
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST)
                else exc.strerror
            )
            raise InputFailed(f"folder {name!r} cannot be made in the workspace: {why}") from None
        os.close(current)
        current = inner
    return current


async def _download(
    client: httpx.AsyncClient, link: ServerLink, item: AssignedInput, descriptor: int
) -> None:
    """The file's bytes into `descriptor`, checked; resumed with Range after a cut."""
    retrying = Retrying(link)
    digest = hashlib.sha256()
    written = 0
    damaged = 0
    where = f"artifact {item.path} of run {item.run}"
    while True:
        before = written
        url = (
            f"{retrying.base}/api/v1/projects/{quoted(item.project)}/runs/{quoted(item.run)}"
            f"/artifacts/{quoted(item.path)}"
        )
        headers = {"Range": f"bytes={written}-"} if written else {}
        try:
            async with client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 200 and written:
                    written, digest = 0, hashlib.sha256()  # the whole file again
                    os.ftruncate(descriptor, 0)
                if status in (200, 206):
                    async for data in response.aiter_bytes(WRITE_BYTES):
                        if written + len(data) > item.size:
                            raise InputFailed(f"{where} is larger than the master said")
                        _write_all(descriptor, data, written)
                        digest.update(data)
                        written += len(data)
                elif status in (401, 403, 404):
                    raise InputFailed(f"{where} cannot be downloaded: the server answered {status}")
                elif status == 416 and written >= item.size:
                    pass
                else:
                    await retrying.failed(f"{where}: the server answered {status}", status >= 500)
                    continue
        except httpx.HTTPError as exc:
            await retrying.failed(f"{where}: {type(exc).__name__}")
            continue
        except UploadFailed as exc:
            raise InputFailed(exc.reason) from None
        if written < item.size:  # cut short: the rest with a Range request
            if written == before:
                try:
                    await retrying.failed(f"{where}: no bytes came", server_error=True)
                except UploadFailed as exc:
                    raise InputFailed(exc.reason) from None
            else:
                retrying.succeeded()
            continue
        retrying.succeeded()
        if digest.hexdigest() == item.sha256:
            return
        damaged += 1
        if damaged >= MAX_ATTEMPTS:
            raise InputFailed(f"{where} does not match its SHA-256")
        written, digest = 0, hashlib.sha256()
        os.ftruncate(descriptor, 0)


def _write_all(descriptor: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        count = os.pwrite(descriptor, view, position)
        view = view[count:]
        position += count
