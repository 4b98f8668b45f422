"""`orchestra worker --run-as USER`: the OS user a worker's steps run as, other than its own.

The agent and its spawner stay the worker's user (root: switching user needs it); each step
process becomes USER (its uid, primary group and supplementary groups) just before it starts
its command. Its workspace is made USER's; the worker's journals, token and data directory
stay the worker's, private (docs/security.md, "Local workers, files and OS users").
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass

from orchestra.errors import InvalidInput


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def spawner_argument(self) -> str:
        """The spawner's `--run-as` value: UID:GID:G1,G2."""
        return f"{self.uid}:{self.gid}:{','.join(str(g) for g in self.groups)}"

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with the user's own HOME, USER and LOGNAME."""
        return {**base, "HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def describe(self) -> str:
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def resolve_run_as(name: str) -> RunAs:
    """USER as the steps will run: refused when this process cannot switch to it (not root)
    or when there is no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise InvalidInput(f"--run-as {name}: there is no such user on this machine") from None
    if os.geteuid() != 0:
        raise InvalidInput(
            f"--run-as {name} needs the worker to run as root (to start steps as another "
            f"user); it runs as uid {os.geteuid()}"
        )
    groups = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return RunAs(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(sorted(groups)),
        home=entry.pw_dir,
    )
