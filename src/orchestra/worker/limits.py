"""Limits on a step's processes: resource limits set in the spawner's child before it starts
the command, and a pids cgroup for the number of processes where this worker may make one.

- memory_mb: RLIMIT_AS, the address space of each process (an allocation beyond it fails);
- open_files: RLIMIT_NOFILE, the open files of each process;
- cpu_seconds: RLIMIT_CPU, the CPU time of each process (SIGXCPU at the limit, SIGKILL a
  second later);
- processes: the step's processes at once, by a pids cgroup (v1, or v2 with the pids
  controller enabled for this worker's cgroup's children) when this worker may make one;
  otherwise RLIMIT_NPROC, which counts every process of the worker's user and does not hold
  for root (the step's log says so).

A step that exceeds one fails; its log says which limit when the worker can tell (SIGXCPU, a
fork the cgroup refused), and which limits it ran under when it cannot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
MEBIBYTE = 1 << 20
# bwrap's own two processes (outside and inside the sandbox) count in the step's cgroup, and
# bwrap needs about 8 open files to set the sandbox up (the limit holds for it too).
SANDBOX_PROCESSES = 2
SANDBOX_OPEN_FILES = 8


@dataclass(frozen=True)
class StepLimits:
    """What the spawner applies to a step: resource limits by name (soft, hard), and the
    cgroup to join (its cgroup.procs); `notes` go to the top of the step's log."""

    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    cgroup: Path | None = None
    notes: list[str] = field(default_factory=list)

    def request(self) -> dict[str, object]:
        """The fields of the spawner's request (none when there is nothing to apply)."""
        fields: dict[str, object] = {}
        if self.rlimits:
            fields["rlimits"] = {name: list(pair) for name, pair in self.rlimits.items()}
        if self.cgroup is not None:
            fields["cgroup"] = str(self.cgroup / "cgroup.procs")
        return fields


class ProcessGroups:
    """The pids cgroups of a worker's steps, in its own directory of the pids hierarchy (found
    and made the first time a step needs one), or none when it may make none (`problem` says
    why)."""

    def __init__(self, worker: str | None) -> None:
        self.worker = worker
        self._looked = worker is None
        self.root: Path | None = None
        self.problem: str | None = None if worker else "not looked for"
        # Steps' cgroups that still held processes when their step ended (killed ones not yet
        # reaped, ones the step left running): dropped once empty.
        self._left: set[Path] = set()

    def _find(self) -> Path | None:
        if not self._looked:
            self._looked = True
            base, self.problem = pids_cgroup()
            if base is not None:
                root = base / f"orchestra-{self.worker}"
                try:
                    root.mkdir(exist_ok=True)
                    self.root = root
                except OSError as exc:
                    self.problem = f"cannot make a pids cgroup under {base}: {exc.strerror}"
                else:
                    # What an earlier agent left: a step still running keeps its own.
                    self._left.update(p for p in root.iterdir() if p.is_dir())
                    self.sweep()
        return self.root

    def path(self, run: str, step: int) -> Path | None:
        root = self._find()
        return None if root is None else root / f"{run}-{step}"

    def make(self, run: str, step: int, maximum: int) -> Path | None:
        path = self.path(run, step)
        if path is None:
            return None
        try:
            # parents: another agent of the same identifier (a test's) may have just dropped
            # the worker's directory on its way out.
            path.mkdir(parents=True, exist_ok=True)
            (path / "pids.max").write_text(str(maximum))
        except OSError as exc:
            self.problem = f"cannot make the pids cgroup {path}: {exc.strerror}"
            log.warning("%s", self.problem)
            return None
        return path

    def refused(self, run: str, step: int) -> int:
        """How many new processes the step's cgroup refused (0 if none or unknown)."""
        path = self.path(run, step)
        if path is None:
            return 0
        try:
            for line in (path / "pids.events").read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "max":
                    return int(count)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self, run: str, step: int) -> None:
        """Drop the step's cgroup, now or once the processes still in it are gone."""
        path = self.path(run, step)
        if path is not None:
            self._left.add(path)
        self.sweep()

    def sweep(self) -> None:
        """Drop the steps' cgroups that have emptied since."""
        for path in list(self._left):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                continue  # processes still in it
            self._left.discard(path)

    def close(self) -> None:
        """Drop what has emptied, and this worker's directory when nothing is left in it."""
        self.sweep()
        if self.root is not None:
            with contextlib.suppress(OSError):
                self.root.rmdir()


def pids_cgroup() -> tuple[Path | None, str | None]:
    """This process's own directory in a pids cgroup hierarchy it may make children in, or
    None and why not."""
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None, "no cgroups here"
    v1 = v2 = None
    for mount in mounts:
        before, _, after = mount.partition(" - ")
        fields, kinds = before.split(), after.split()
        if len(fields) < 5 or len(kinds) < 3:
            continue
        if kinds[0] == "cgroup" and "pids" in kinds[2].split(","):
            v1 = (fields[3], Path(fields[4]))
        elif kinds[0] == "cgroup2":
            v2 = (fields[3], Path(fields[4]))
    for membership in memberships:
        number, controllers, own = membership.split(":", 2)
        if "pids" in controllers.split(",") and v1 is not None:
            candidate = _within(v1, own)
        elif number == "0" and v2 is not None:
            candidate = _within(v2, own)
            try:
                enabled = (candidate / "cgroup.subtree_control").read_text().split()
            except OSError:
                continue
            if "pids" not in enabled:
                continue
        else:
            continue
        if os.access(candidate, os.W_OK):
            return candidate, None
        return None, f"the pids cgroup {candidate} is not writable by this worker"
    return None, "no pids cgroup controller this worker may use"


def _within(mount: tuple[str, Path], own: str) -> Path:
    root, point = mount
    if root != "/" and own.startswith(root):
        own = own[len(root) :]
    return point / own.lstrip("/")


def step_limits(
    limits: Mapping[str, int | None],
    groups: ProcessGroups,
    run: str,
    step: int,
    *,
    sandboxed: bool,
) -> StepLimits:
    """What to apply to a step with these `limits` (names as a job gives them)."""
    rlimits: dict[str, tuple[int, int]] = {}
    notes: list[str] = []
    memory = limits.get("memory_mb")
    if memory:
        rlimits["RLIMIT_AS"] = (memory * MEBIBYTE, memory * MEBIBYTE)
    files = limits.get("open_files")
    if files:
        rlimits["RLIMIT_NOFILE"] = (files, files)
        if sandboxed and files < SANDBOX_OPEN_FILES:
            notes.append(
                f"limits.open_files={files} leaves bwrap too few files to set the sandbox up "
                f"(it needs about {SANDBOX_OPEN_FILES})"
            )
    cpu = limits.get("cpu_seconds")
    if cpu:
        rlimits["RLIMIT_CPU"] = (cpu, cpu + 1)
    processes = limits.get("processes")
    cgroup = None
    if processes:
        extra = SANDBOX_PROCESSES if sandboxed else 0
        cgroup = groups.make(run, step, processes + extra)
        if cgroup is None:
            rlimits["RLIMIT_NPROC"] = (processes, processes)
            if os.geteuid() == 0:
                notes.append(
                    f"limits.processes={processes} is not enforced on this worker: it may make "
                    f"no pids cgroup ({groups.problem}), and RLIMIT_NPROC does not hold for root"
                )
            else:
                notes.append(
                    f"limits.processes={processes} applies as RLIMIT_NPROC, which counts every "
                    f"process of this worker's user ({groups.problem})"
                )
    return StepLimits(rlimits, cgroup, notes)


def diagnosis(
    limits: Mapping[str, int | None],
    code: int | None,
    refused: int,
    *,
    sandboxed: bool,
) -> str | None:
    """Which limit a failed step exceeded when the worker can tell, else the limits it can
    say nothing of; None when there is nothing to say."""
    cpu = limits.get("cpu_seconds")
    by_signal = {-signal.SIGXCPU} | ({128 + signal.SIGXCPU} if sandboxed else set())
    if cpu and code in by_signal:
        return f"the step exceeded its CPU time limit (limits.cpu_seconds={cpu}): killed by SIGXCPU"
    processes = limits.get("processes")
    if processes and refused:
        return (
            f"the step reached its process limit (limits.processes={processes}): "
            f"{refused} new process{'es were' if refused > 1 else ' was'} refused"
        )
    silent = [f"{name}={limits[name]}" for name in ("memory_mb", "open_files") if limits.get(name)]
    if silent:
        return (
            f"the step ran with limits.{', limits.'.join(silent)}: an allocation or an open "
            "beyond them fails, which may be why it failed"
        )
    return None
