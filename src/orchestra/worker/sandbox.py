"""Steps in a sandbox of the operating system: bubblewrap (`bwrap`), Linux namespaces.

A sandboxed step sees the system read-only, writes only to its workspace and a private /tmp,
cannot see the worker's data directory (journals, other workspaces) nor the other paths the
worker hides (its token file; a local worker's server files), sees only its own processes, has
no capability (root in it is uid 0 without privileges), and, without network, has a network
namespace of its own (its own loopback, nothing else) and no /run (the machine's services'
Unix sockets). docs/isolation.md says what this does not do.

The worker checks at start that bwrap works by running it once, as a step would be run; it
then says `sandbox: "true"` in its properties, or why not.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestra.domain.matching import SANDBOX_PROPERTY
from orchestra.worker.run_as import RunAs

log = logging.getLogger(__name__)
MODES = ("auto", "always", "never")
PROBE_TIMEOUT = 10.0
MAX_DETAIL = 200  # of what bwrap said, in the worker's property
# Paths the sandbox replaces whatever the worker hides there: nothing to hide again.
_REPLACED = (Path("/tmp"), Path("/dev"), Path("/proc"))
_WITHOUT_NETWORK = (Path("/run"),)


@dataclass(frozen=True)
class Sandbox:
    """How this worker runs sandboxed steps: `mode` (auto: the steps of jobs that ask;
    always: every step; never: none, and no property), the bwrap it found working, or the
    `problem` that keeps it from sandboxing, and the paths its steps must not see."""

    mode: str = "never"
    bwrap: str | None = None
    problem: str | None = None
    hidden: tuple[Path, ...] = ()

    @property
    def available(self) -> bool:
        return self.bwrap is not None

    def property_value(self) -> str | None:
        """The worker's `sandbox` property: "true", or why not; none with --sandbox never."""
        if self.mode == "never":
            return None
        if self.available:
            return "true"
        return f"unavailable: {self.problem}"

    def wanted(self, asked: bool) -> bool:
        """Whether a step runs sandboxed: its job asked, or this worker sandboxes them all."""
        return asked or self.mode == "always"

    def command(
        self,
        argv: Sequence[str],
        workspace: Path,
        *,
        network: bool = True,
        files: Sequence[Path] = (),
    ) -> list[str]:
        """`argv` run by bwrap in the sandbox, in `workspace`; `files` (a step's results file)
        bound writable at their own paths, even under a hidden directory."""
        assert self.bwrap is not None, "no working bwrap"
        bound = [a for f in files for a in ("--bind", str(f), str(f))]
        return [self.bwrap, *options(workspace, network, self.hidden), *bound, "--", *argv]


def options(workspace: Path, network: bool, hidden: Iterable[Path]) -> list[str]:
    """bwrap's options for a step in `workspace`. Order matters: the system read-only, fresh
    /dev, /proc and /tmp, the hidden paths covered (an empty tmpfs over a directory, /dev/null
    over a file), then the workspace bound back writable, even when it lies under one of them."""
    arguments = ["--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    if not network:
        arguments.append("--unshare-net")
    # As root, bwrap keeps every capability unless told: with them a step could remount the
    # system writable or unmount what hides the worker's files.
    arguments += ["--cap-drop", "ALL", "--ro-bind", "/", "/"]
    arguments += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    replaced = _REPLACED if network else _REPLACED + _WITHOUT_NETWORK
    if not network:
        arguments += ["--tmpfs", "/run"]
    for path in hidden:
        if any(path == r or r in path.parents for r in replaced):
            continue
        if path.is_dir():
            arguments += ["--tmpfs", str(path)]
        elif path.exists():
            arguments += ["--ro-bind", "/dev/null", str(path)]
    arguments += ["--bind", str(workspace), str(workspace), "--chdir", str(workspace)]
    return arguments


def hidden_paths(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The paths to hide, absolute and without duplicates; `/` cannot be hidden."""
    found: dict[Path, None] = {}
    for path in paths:
        absolute = Path(os.path.abspath(path))
        if absolute == Path("/"):
            raise ValueError("the root directory cannot be hidden from the steps")
        found[absolute] = None
    return tuple(found)


def prepare(mode: str, hidden: Iterable[Path] = (), run_as: RunAs | None = None) -> Sandbox:
    """This worker's sandbox: bwrap found and run once as a step would be (unless `never`),
    as the `run_as` user when the steps run as one."""
    if mode not in MODES:
        raise ValueError(f"--sandbox must be one of {', '.join(MODES)}")
    paths = hidden_paths(hidden)
    if mode == "never":
        return Sandbox(mode, hidden=paths)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        problem = "bwrap is not installed (Debian's bubblewrap package)"
        return Sandbox(mode, problem=problem, hidden=paths)
    failed = probe(bwrap, paths, run_as)
    if failed is not None:
        return Sandbox(mode, problem=failed, hidden=paths)
    return Sandbox(mode, bwrap=bwrap, hidden=paths)


def start_sandbox(
    mode: str, hidden: Iterable[Path], properties: dict[str, str], run_as: RunAs | None = None
) -> Sandbox | None:
    """A worker's sandbox at its start, said in its log and in its `sandbox` property (set in
    `properties`); None when every step must be sandboxed (`always`) and none can be."""
    sandbox = prepare(mode, hidden, run_as)
    value = sandbox.property_value()
    if value is not None:
        properties[SANDBOX_PROPERTY] = value
    if mode == "never":
        log.info("sandbox: off (--sandbox never): no step runs in a sandbox")
    elif sandbox.available:
        scope = "every step runs" if mode == "always" else "the steps of jobs that ask run"
        log.info("sandbox: bubblewrap works (%s); %s in it", sandbox.bwrap, scope)
    elif mode == "always":
        log.error("sandbox: --sandbox always, and %s: not starting", sandbox.problem)
        return None
    else:
        log.warning(
            "sandbox: %s; this worker takes no sandboxed job (its property sandbox=%r)",
            sandbox.problem,
            value,
        )
    return sandbox


def probe(bwrap: str, hidden: Sequence[Path] = (), run_as: RunAs | None = None) -> str | None:
    """Run `true` in a sandbox without network, as a step would run (as `run_as`, if given):
    None when it works, else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="orchestra-sandbox-probe-") as directory:
        argv = [bwrap, *options(Path(directory), False, hidden), "--", "true"]
        identity: dict[str, Any] = {}
        if run_as is not None:
            os.chown(directory, run_as.uid, run_as.gid)
            identity = {"user": run_as.uid, "group": run_as.gid, "extra_groups": run_as.groups}
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT,
                check=False,
                **identity,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bwrap does not run: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        detail = said[-1][:MAX_DETAIL] if said else f"exit status {done.returncode}"
        return f"bwrap does not work here: {detail}"
    return None
