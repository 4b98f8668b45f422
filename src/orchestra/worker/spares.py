"""Journal directories kept for the next runs, so that a run creates (almost) no file.

A run's journal is a directory of files (worker/journal.py). Creating a file or a directory is
the one disk operation whose cost varies widely: from 20 us to 0.5 ms of CPU on the same ext4
disk, by where it lands (docs/performance.md, "Where the bench writes"), and a run needed six.
Opening, truncating, writing and renaming cost little everywhere. So a finished run's directory
is kept instead of deleted, its files emptied, and the next run takes it over and writes over
them: a run with no more steps than the one before creates no file.

Safety: a finished journal leaves `runs/` in one rename, as its deletion did, before anything in
it is touched; its assignment is renamed to the spare name `_write_atomic` writes next, so a
taken-over directory holds no assignment until the new one is written whole (an agent that dies
in between finds it incomplete and discards it, as before), and likewise no exit status until the
spawner writes one. No file keeps a byte of the run before. The pool is emptied when the agent
starts.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

ASSIGNMENT = "assignment.json"
SPARE_ASSIGNMENT = "assignment.tmp"  # what journal._write_atomic writes before its rename
EMPTIED = frozenset({"events.jsonl", "workspace", SPARE_ASSIGNMENT})


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
        path = Path(entry.path)
        if entry.name == ASSIGNMENT or entry.name.endswith(".exit"):
            # Kept under the name the next atomic write of it starts from (the journal's for
            # the assignment, the spawner's for an exit status): it is written over, then
            # renamed into place, and nothing is created.
            spare = directory / (
                SPARE_ASSIGNMENT if entry.name == ASSIGNMENT else f"{entry.name}.tmp"
            )
            os.replace(path, spare)
            os.truncate(spare, 0)
        elif entry.is_file(follow_symlinks=False) and (
            entry.name in EMPTIED or entry.name.endswith((".log", ".exit.tmp"))
        ):
            os.truncate(path, 0)
        elif entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path)
        else:
            path.unlink()
