"""The spawner: a small process that starts job steps and outlives the worker agent.

The agent asks it (JSON lines on stdin) to start a step; it starts the process in its own
session with stdout and stderr going to the step's log file (under the request's resource
limits, in the request's cgroup: worker/limits.py), answers with the pid, and when the
process ends writes its exit status to a file, atomically, and says so on stdout. If the agent
dies, the spawner keeps waiting for its children and writing their exit files, then exits, so
a restarted agent finds every step's output and exit status on disk.

A request with values to `mask` (a run's secrets) has its step write to a pipe instead: the
spawner copies it to the log file with every value replaced by asterisks, so that the values
never reach the disk (a value split across two reads is still seen whole: the last bytes are
kept back until more come, or the step ends). `--run-as UID:GID:GROUPS` starts every step as
that user (the spawner itself stays the agent's), `--umask` gives the steps the umask the
agent had before it made its own files private.

Run as `python -m orchestra.worker.spawner`; it imports nothing from the rest of Orchestra.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_out_lock = threading.Lock()
# The agent's environment, inherited: a step's is this plus the variables its request adds.
_ENVIRONMENT = dict(os.environ)


def _say(message: dict[str, Any]) -> None:
    with _out_lock:
        try:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the agent is gone; the exit file is what matters


def _write_exit(path: str, code: int) -> None:
    temporary = f"{path}.tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(str(code))
        handle.flush()
    # Renamed into place whole; not fsynced: what this guards against is the agent's death, and
    # the page cache survives that. A machine crash loses the worker's runs to the lease anyway.
    os.replace(temporary, path)


def _record_exit(pid: int, code: int, exit_path: str, stream: MaskedStream | None) -> None:
    if stream is not None:
        stream.finish()  # all the step wrote is in the log before its end is told
    _say({"pid": pid, "exit": code})
    try:
        _write_exit(exit_path, code)
    except OSError:
        # The file is for an agent that restarts: keep trying while the disk is full, without
        # holding up the other steps' exits.
        threading.Thread(target=_retry_exit, args=(exit_path, code), daemon=False).start()


def _retry_exit(exit_path: str, code: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            _write_exit(exit_path, code)
            return
        except OSError:
            pass


class Reaper:
    """One thread waits for every step (any child, as it ends) instead of a thread per step,
    which cost a thread's start and end per run. A step that ends before it is registered
    (the reaper got to it first) is kept until it is."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._children: dict[int, tuple[subprocess.Popen[bytes], str, MaskedStream | None]] = {}
        self._early: dict[int, int] = {}  # pid -> exit code, ended before being registered
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=False)
        self._thread.start()

    def add(
        self,
        process: subprocess.Popen[bytes],
        exit_path: str,
        stream: MaskedStream | None = None,
    ) -> None:
        with self._changed:
            code = self._early.pop(process.pid, None)
            if code is None:
                self._children[process.pid] = (process, exit_path, stream)
                self._changed.notify()
                return
        process.returncode = code  # reaped here: Popen must not wait for it
        _record_exit(process.pid, code, exit_path, stream)

    def close(self) -> None:
        """No more steps will come: return once every one started has ended."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._children:
                    if self._closing:
                        return
                    self._changed.wait()
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                self._lost()
                continue
            code = os.waitstatus_to_exitcode(status)
            with self._changed:
                child = self._children.pop(pid, None)
                if child is None:
                    self._early[pid] = code
                    continue
            process, exit_path, stream = child
            process.returncode = code
            _record_exit(pid, code, exit_path, stream)

    def _lost(self) -> None:
        """Registered steps that are no children to wait for (something else reaped them):
        their exit status is lost, which the agent reports as such; nothing is invented."""
        with self._changed:
            lost = list(self._children.items())
            self._children.clear()
        for pid, (_process, _exit_path, stream) in lost:
            if stream is not None:
                stream.finish()
            _say({"pid": pid, "exit": None})
        time.sleep(0.05)


def _spawn(request: dict[str, Any], reaper: Reaper) -> None:
    ident = request.get("id")
    cgroup = -1
    stream: MaskedStream | None = None
    try:
        if request.get("cgroup"):
            cgroup = os.open(request["cgroup"], os.O_WRONLY | os.O_CLOEXEC)
        prepare = _preparation(request.get("rlimits") or {}, cgroup, _RUN_AS)
        values = [v.encode() for v in request.get("mask") or () if v]
        with open(request["log"], "ab", buffering=0) as log:
            output: Any = log
            if values:
                read, output = os.pipe()
                stream = MaskedStream(read, os.dup(log.fileno()), values)
            try:
                process = subprocess.Popen(
                    request["argv"],
                    cwd=request["cwd"],
                    env={**_ENVIRONMENT, **request["variables"]},
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=prepare,  # a system call per limit: safe beside the reaper thread
                )
            finally:
                if stream is not None:
                    os.close(output)  # the step holds the pipe's writing end now
    except OSError as exc:
        if stream is not None:
            stream.close()
        reason = exc.strerror or str(exc)
        _say({"id": ident, "error": f"cannot start {request['argv'][0]!r}: {reason}"})
        return
    except subprocess.SubprocessError as exc:
        if stream is not None:
            stream.close()
        _say({"id": ident, "error": f"cannot apply the step's limits: {exc}"})
        return
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if stream is not None:
            stream.close()
        _say({"id": ident, "error": f"invalid spawn request: {exc}"})
        return
    finally:
        if cgroup >= 0:
            os.close(cgroup)
    if stream is not None:
        _masker().add(stream)
    _say({"id": ident, "pid": process.pid})
    reaper.add(process, request["exit"], stream)


def _preparation(
    rlimits: dict[str, list[int]], cgroup: int, run_as: tuple[int, int, list[int]] | None
) -> Callable[[], None] | None:
    """What the child does before it starts the command: join the step's cgroup (writing 0
    to its cgroup.procs moves the writer), set its resource limits, none above the spawner's
    own hard limits, then become the `run_as` user (uid, gid, supplementary groups), which
    could do neither. None when there is nothing to do (the child is then started the fast
    way, without running Python between fork and exec)."""
    if not rlimits and cgroup < 0 and run_as is None:
        return None
    limits = []
    for name, (soft, hard) in rlimits.items():
        kind = getattr(resource, name)
        _, current = resource.getrlimit(kind)
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
        limits.append((kind, (min(soft, hard), hard)))

    def prepare() -> None:
        if cgroup >= 0:
            os.write(cgroup, b"0")
        for kind, pair in limits:
            resource.setrlimit(kind, pair)
        if run_as is not None:
            uid, gid, groups = run_as
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)

    return prepare


class MaskedStream:
    """A step's output, from the pipe it writes to, to its log file with every value in
    `values` replaced by asterisks of the same length. The last len(longest value) - 1 bytes
    are kept back until more come or the step ends: a value split across two reads is whole
    in the buffer when it is masked."""

    def __init__(self, source: int, log: int, values: list[bytes]) -> None:
        os.set_blocking(source, False)
        self.source, self.log = source, log
        self._values = sorted(set(values), key=len, reverse=True)  # the longest first
        self._keep = max(len(v) for v in self._values) - 1
        self._pending = b""
        self._lock = threading.Lock()
        self.ended = False

    def fileno(self) -> int:
        return self.source

    def pump(self) -> bool:
        """Copy what the pipe holds now; False once every writer has closed it (the
        masker's thread then closes the stream)."""
        with self._lock:
            while not self.ended:
                try:
                    data = os.read(self.source, 65536)
                except BlockingIOError:
                    return True
                except OSError:
                    data = b""
                if not data:
                    self._write(final=True)
                    self.ended = True
                    break
                self._pending += data
                self._write(final=False)
            return False

    def finish(self) -> None:
        """The step has ended: copy what it wrote, held-back bytes included. Its children
        may still write; that is copied as it comes."""
        if self.pump():
            with self._lock:
                self._write(final=True)

    def _write(self, *, final: bool) -> None:
        masked = self._pending
        for value in self._values:
            masked = masked.replace(value, b"*" * len(value))
        cut = len(masked) if final else max(0, len(masked) - self._keep)
        out, self._pending = memoryview(masked)[:cut], masked[cut:]
        try:
            while out:
                out = out[os.write(self.log, out) :]
        except OSError:
            pass  # a full disk: the step's output is lost, as it would be written directly

    def close(self) -> None:
        for descriptor in (self.source, self.log):
            if descriptor >= 0:
                os.close(descriptor)
        self.source = self.log = -1


class Masker:
    """One thread copies every masked step's output as it comes (a step without values to
    mask writes to its log file directly)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._added: list[MaskedStream] = []
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._thread: threading.Thread | None = None

    def add(self, stream: MaskedStream) -> None:
        with self._lock:
            self._added.append(stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()
        os.write(self._wake_write, b".")

    def _run(self) -> None:
        while True:
            for key, _events in self._selector.select():
                if key.fileobj == self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                    with self._lock:
                        added, self._added = self._added, []
                    for stream in added:
                        self._selector.register(stream, selectors.EVENT_READ)
                    continue
                masked = key.fileobj
                assert isinstance(masked, MaskedStream)
                if not masked.pump():
                    self._selector.unregister(masked)
                    masked.close()


def _run_as(arguments: list[str]) -> tuple[int, int, list[int]] | None:
    """`--run-as UID:GID:G1,G2`: the identity the steps run under."""
    if "--run-as" not in arguments:
        return None
    uid, gid, groups = arguments[arguments.index("--run-as") + 1].split(":")
    return int(uid), int(gid), [int(g) for g in groups.split(",") if g]


_RUN_AS: tuple[int, int, list[int]] | None = None
_MASKER: list[Masker] = []  # started with the first step that has values to mask


def _masker() -> Masker:
    if not _MASKER:
        _MASKER.append(Masker())
    return _MASKER[0]


def _restore_policy(arguments: list[str]) -> None:
    """`--policy N`: the CPU scheduling policy the steps are to run under (the agent's own
    before it made itself SCHED_BATCH; see orchestra/worker/cpu_policy.py)."""
    if "--policy" in arguments:
        try:
            policy = int(arguments[arguments.index("--policy") + 1])
            os.sched_setscheduler(0, policy, os.sched_param(0))
        except (AttributeError, OSError, ValueError, IndexError):
            pass


def main() -> None:
    global _RUN_AS
    # Ctrl-C in the agent's terminal must not take the spawner (and its bookkeeping) with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arguments = sys.argv[1:]
    _restore_policy(arguments)
    _RUN_AS = _run_as(arguments)
    if "--umask" in arguments:
        os.umask(int(arguments[arguments.index("--umask") + 1], 8))
    reaper = Reaper()
    try:
        for line in sys.stdin:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if isinstance(request, dict):
                _spawn(request, reaper)
    finally:
        reaper.close()


if __name__ == "__main__":
    main()
