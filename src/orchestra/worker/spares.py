"""Journal directories kept for the next runs, emptied of their files.

A run's journal is a directory of files (worker/journal.py). On this project's ext4 disks the
directory is the costly part to make and remove (mkdir, and rmdir's journal work), so a
finished run's directory is kept instead of deleted, its files unlinked, and the next run takes
it over. Its files are not kept and written over: truncating a file to zero makes ext4 allocate
and write out what is next written to it when it is closed (its `auto_da_alloc` guard against
zero-length files after a crash), and a reused journal paid that on every file of every run
(a run's journal cost 0.65-0.7 ms of CPU that way, 0.29 ms with the files unlinked, 0.36 ms
with a new directory each time; docs/performance.md).

Safety: a finished journal leaves `runs/` in one rename, as its deletion did, before anything in
it is touched; a taken-over directory is empty, so it holds no assignment until the new one is
written whole (an agent that dies in between finds it incomplete and discards it, as before),
and no byte of the run before. The pool is emptied when the agent starts.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path


class Spares:
    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep
        self._free: list[Path] = []
        self._names = itertools.count()

    def reset(self) -> None:
        """Start empty: what a previous agent left here may be half emptied."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._free = []

    def take(self, target: Path) -> bool:
        """Move a spare directory to `target`; False if there is none (create one then)."""
        while self._free:
            spare = self._free.pop()
            try:
                os.rename(spare, target)
                return True
            except OSError:
                shutil.rmtree(spare, ignore_errors=True)
        return False

    def give(self, directory: Path) -> None:
        """Take a finished journal's directory out of the way at once, and keep it, emptied,
        for a next run (or delete it when enough are kept)."""
        if len(self._free) >= self.keep:
            shutil.rmtree(directory, ignore_errors=True)
            return
        spare = self.directory / str(next(self._names))
        try:
            os.rename(directory, spare)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            return
        try:
            _empty(spare)
        except OSError:
            shutil.rmtree(spare, ignore_errors=True)
            return
        self._free.append(spare)


def _empty(directory: Path) -> None:
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
