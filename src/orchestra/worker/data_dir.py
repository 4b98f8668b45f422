"""The worker's data directory: runs/ (journals), workspaces/, spare/. The worker's alone:
mode 0700, its files 0600 (the agent's umask is 077: worker/app.py). With --run-as, the steps'
user may pass through it (0711: not list it) to reach workspaces/, whose directories are its
own; runs/ stays closed to it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from orchestra.worker.run_as import RunAs

log = logging.getLogger(__name__)


def prepare_data_dir(data_dir: Path, run_as: RunAs | None) -> None:
    passable = 0o711 if run_as is not None else 0o700
    for directory, mode in (
        (data_dir, passable),
        (data_dir / "runs", 0o700),
        (data_dir / "workspaces", passable),
    ):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            directory.chmod(mode)  # an older worker's directory may be open to everyone
        except PermissionError:
            log.warning("cannot make %s private (mode %o): it is not this user's", directory, mode)


def give_workspace(workspace: Path, run_as: RunAs | None) -> None:
    """A run's workspace, made the steps' user's (with --run-as)."""
    if run_as is None:
        return
    workspace.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chown(workspace, run_as.uid, run_as.gid)
