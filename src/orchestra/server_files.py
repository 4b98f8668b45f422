"""The server's files, private to its OS user: its data directory (mode 0700) and what it
holds (the SQLite database with its -wal and -shm files, the instance key, var/cli.env of
`make run`, logs: 0600), and the database and key files kept elsewhere. The server creates
files under umask 077, and at start takes away what other users were given on those already
there, saying so in its log. docs/security.md, "Local workers, files and OS users"."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)
PRIVATE_UMASK = 0o077


def make_private(data_dir: Path, files: Iterable[Path] = ()) -> list[str]:
    """Set umask 077 for this process, and take group and other permissions away from
    `data_dir`, the entries directly in it and `files` (a directory closed to other users
    closes what lies beneath). Returns what was changed, as "PATH (OLD -> NEW)"."""
    os.umask(PRIVATE_UMASK)
    paths: list[Path] = []
    if data_dir.is_dir():
        paths.append(data_dir)
        paths.extend(sorted(data_dir.iterdir()))
    paths.extend(files)
    changed: list[str] = []
    for path in dict.fromkeys(paths):
        try:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if stat.S_ISLNK(os.lstat(path).st_mode) or not mode & 0o077:
                continue
            os.chmod(path, mode & 0o700)
        except OSError:
            continue  # gone since, or not this user's: nothing to tighten
        changed.append(f"{path} ({mode:04o} -> {mode & 0o700:04o})")
    if changed:
        log.warning(
            "made the server's files private to its OS user (others could read them): %s",
            ", ".join(changed),
        )
    return changed
