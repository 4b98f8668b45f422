"""What /proc says about processes: whether one is gone, its children, its command line, its
CPU time and memory, and which processes carry a test's tag in their environment."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

# Every process a test or a benchmark starts carries this variable (and the job processes they
# start in turn inherit it), so that whatever is left at the end can be found and killed.
TAG_VARIABLE = "ORCHESTRA_TEST_TAG"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat.rsplit(b") ", 1)[-1][:1] == b"Z"


def process_stats() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/PID/stat after the command name: state, ppid, pgrp...) of
    every process still there."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        yield int(entry.name), stat.rsplit(b") ", 1)[-1].split()


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent`."""
    return [pid for pid, fields in process_stats() if int(fields[1]) == parent]


def group_alive(pgid: int) -> bool:
    """Whether any process of this process group still runs (zombies do not count)."""
    return any(fields[0] != b"Z" and int(fields[2]) == pgid for _pid, fields in process_stats())


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b") ", 1)[1].split()
    # After the command name: state is field 3, utime field 14 and stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """The resident memory of a process (0 once it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tagged_pids(tag: str) -> list[int]:
    """Every process (but this one) whose environment carries `tag`."""
    needle = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_tagged(tag: str) -> None:
    """SIGKILL every process carrying `tag`, with its process group unless that is ours
    (daemonized grandchildren included)."""
    for pid in tagged_pids(tag):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
