"""Running one run's steps in order, on the worker, as processes started by the spawner.

Each step's output is read from its log file as it grows and journaled as output events; its
end is journaled when the spawner reports the exit status (or, for a step started before the
agent restarted, when the exit file appears). Abort sends SIGTERM to the step's process group,
then SIGKILL after the grace period. A step runs in a sandbox (worker/sandbox.py) when its job
asks or the worker sandboxes every step, and under its job's limits (worker/limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from orchestra.domain.commands import CommandContext, render_command, render_environment
from orchestra.errors import InvalidInput
from orchestra.protocol.messages import MAX_OUTPUT_CHUNK
from orchestra.worker import limits as step_limits
from orchestra.worker import results as step_results
from orchestra.worker.journal import WITHHELD_REASON, Journal
from orchestra.worker.limits import ProcessGroups
from orchestra.worker.run_transfers import RunTransfers
from orchestra.worker.sandbox import Sandbox
from orchestra.worker.spawner_client import Spawner
from orchestra.worker.uploads import ServerLink

log = logging.getLogger(__name__)
TAIL_INTERVAL = 0.05
ORPHAN_GRACE = 2.0


def _now() -> str:
    return datetime.now(UTC).isoformat()


class RunExecution:
    def __init__(
        self,
        journal: Journal,
        spawner: Spawner,
        worker_identifier: str,
        environment: Mapping[str, str],
        on_event: Callable[[Journal], None],
        sandbox: Sandbox | None = None,
        groups: ProcessGroups | None = None,
        link: ServerLink | None = None,
    ) -> None:
        self.journal = journal
        # Artifacts moving to or from the server (abort stops them).
        self.transfers = RunTransfers(journal, link, spawner, self._append_text)
        self.spawner = spawner
        self.worker_identifier = worker_identifier
        self.environment = environment
        self.on_event = on_event
        self.sandbox = sandbox or Sandbox()
        self.groups = groups or ProcessGroups(None)
        self.abort_reason: str | None = None
        self._pid: int | None = None
        self._sandboxed = False  # whether the current step runs in a sandbox
        self._offset = journal.log_size()
        self._step_groups: list[int] = []  # each step's process group, emptied at the run's end

    # Abort.

    def abort(self, reason: str = "aborted", *, transfers: bool = True) -> None:
        """Stop the run: SIGTERM to the current step's process group, SIGKILL after grace;
        its artifacts' transfer stopped, unless `transfers` is False (a stopping worker leaves
        an upload to its next start: worker/artifact_phase.py)."""
        if self.abort_reason is not None:
            return
        if self.transfers.active is not None:
            if transfers or not self.transfers.uploading:
                self.abort_reason = reason
                self.transfers.active.cancel()
            return
        self.abort_reason = reason
        if self._pid is not None:
            asyncio.get_running_loop().create_task(self._terminate(self._pid))

    async def _terminate(self, pid: int) -> None:
        if self._sandboxed:
            # Not bwrap itself, which would die at once and take the sandbox with it before the
            # step had its grace: the step's processes (the sandbox's init ignores SIGTERM).
            _signal_group(pid, signal.SIGTERM, but=pid)
        else:
            _signal_group(pid, signal.SIGTERM)
        await asyncio.sleep(self.journal.assignment.abort_grace)
        if self._pid == pid:
            # bwrap killed, the sandbox's init dies with it, and with it every process in it.
            _signal_group(pid, signal.SIGKILL)

    # Execution.

    async def execute(self) -> None:
        """Run (or resume) every step, then journal the run's end."""
        if self.journal.ended():
            return
        timer = self._run_timer()
        try:
            await self._execute_steps()
        finally:
            if timer is not None:
                timer.cancel()

    def _run_timer(self) -> asyncio.TimerHandle | None:
        timeout = self.journal.assignment.timeout
        if timeout is None:
            return None
        started = next(
            (e["date"] for e in self.journal.events if e["kind"] == "step_started"), None
        )
        elapsed = (
            (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds() if started else 0
        )
        reason = f"timed out: the run took longer than its timeout of {timeout:g} s"
        return asyncio.get_running_loop().call_later(
            max(0.0, timeout - elapsed), self.abort, reason
        )

    def _step_timer(self, index: int, started: str | None = None) -> asyncio.TimerHandle | None:
        step = self.journal.assignment.steps[index]
        if step.timeout is None:
            return None
        elapsed = (
            (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds() if started else 0
        )
        reason = f"timed out: step {step.name!r} took longer than {step.timeout:g} s"
        return asyncio.get_running_loop().call_later(
            max(0.0, step.timeout - elapsed), self.abort, reason
        )

    async def _execute_steps(self) -> None:
        status, reason = "succeeded", None
        for index in range(len(self.journal.assignment.steps)):
            started, ended = self.journal.step_events(index)
            if ended is None:
                if self.abort_reason is not None:
                    status, reason = "aborted", self._reason()
                    break
                if started is None:
                    step_status = await self._start_step(index)
                else:
                    step_status = await self._resume_step(index, started)
            else:
                step_status = ended["status"]
            if step_status != "succeeded":
                status = step_status
                if step_status == "exception":
                    reason = f"step {index} could not run (see its log)"
                elif step_status == "aborted":
                    reason = self._reason()
                break
        if status in ("failed", "exception") and (full := disk_full(self.journal.directory)):
            reason = full  # the likely cause, and the one the user can act on
        # What the steps left running in the background (in their process groups) ends with
        # the run, so that it cannot watch the runs that come after it (docs/security.md).
        for group in self._step_groups:
            _signal_group(group, signal.SIGKILL)
        self._step_groups.clear()
        if self.journal.assignment.artifacts:
            status, reason = await self._artifacts(status, reason)
        self._emit("run_ended", status=status, reason=reason, date=_now())

    # Artifacts (docs/artifacts.md): the needs' fetched before the first step, the run's own
    # collected and uploaded before its end is journaled.

    async def _start_step(self, index: int) -> str:
        if index == 0 and self.journal.assignment.inputs:
            problem = await self.transfers.fetch_inputs(self.journal.assignment.inputs)
            if self.abort_reason is not None:
                return "aborted"
            if problem is not None:
                self._emit("step_started", step=index, date=_now())
                return await self._fail_to_start(index, problem)
        return await self._run_step(index)

    async def _artifacts(self, status: str, reason: str | None) -> tuple[str, str | None]:
        outcome = await self.transfers.artifacts(status, reason)
        if outcome is None:  # aborted
            self.transfers.note([f"artifacts: their upload was stopped ({self.abort_reason})"])
            return "aborted", self._reason()
        return outcome

    def _reason(self) -> str | None:
        return None if self.abort_reason == "aborted" else self.abort_reason

    async def _run_step(self, index: int) -> str:
        assignment = self.journal.assignment
        step = assignment.steps[index]
        if self.journal.withheld:
            self._emit("step_started", step=index, date=_now())
            return await self._fail_to_start(index, WITHHELD_REASON)
        context = self._context()
        try:
            argv = render_command(step.command, context)
        except InvalidInput as exc:
            self._emit("step_started", step=index, date=_now())
            return await self._fail_to_start(index, f"cannot render the command: {exc}")
        try:
            variables = self._step_variables(context)
        except InvalidInput as exc:
            self._emit("step_started", step=index, date=_now())
            return await self._fail_to_start(index, f"cannot render the environment: {exc}")
        self.journal.workspace.mkdir(parents=True, exist_ok=True)
        sandboxed = self.sandbox.wanted(assignment.sandbox is not None)
        if sandboxed and not self.sandbox.available:
            self._emit("step_started", step=index, date=_now())
            return await self._fail_to_start(index, self._cannot_sandbox())
        results = self._results_path(index)
        try:
            step_results.prepare(results, self.spawner.run_as)
        except OSError as exc:
            self._emit("step_started", step=index, date=_now())
            return await self._fail_to_start(index, f"cannot make its results file: {exc}")
        variables["ORCHESTRA_RESULTS"] = str(results)
        if sandboxed:
            network = assignment.sandbox is None or assignment.sandbox.network
            argv = self.sandbox.command(
                argv, self.journal.workspace, network=network, files=[results]
            )
        applied = step_limits.step_limits(
            self._limits(), self.groups, assignment.run, index, sandboxed=sandboxed
        )
        # The log starts with what the worker has to say about the limits (often nothing).
        self.journal.step_log(index).write_text(
            "".join(f"[orchestra] {n}\n" for n in applied.notes)
        )
        pid, error = await self.spawner.spawn(
            argv,
            str(self.journal.workspace),
            variables,
            self.journal.step_log(index),
            self.journal.step_exit(index),
            applied.request(),
            mask=assignment.secrets,  # masked before they reach the disk (worker/spawner.py)
        )
        started: dict[str, Any] = {"pid": pid}
        if sandboxed:
            started["sandboxed"] = True
        self._emit("step_started", step=index, date=_now(), **started)
        if error is not None or pid is None:
            if applied.cgroup is not None:
                self.groups.remove(assignment.run, index)
            step_results.discard(results)
            return await self._fail_to_start(index, error or "cannot start the command")
        self._pid = pid
        self._step_groups.append(pid)
        self._sandboxed = sandboxed
        if self.abort_reason is not None:
            asyncio.get_running_loop().create_task(self._terminate(pid))
        timer = self._step_timer(index)
        try:
            code = await self._follow(index, self.spawner.wait(pid))
        finally:
            if timer is not None:
                timer.cancel()
        return self._finish(index, code)

    async def _resume_step(self, index: int, started: dict[str, Any]) -> str:
        """Pick up a step started before the agent restarted: its process may still run."""
        pid = started.get("pid")
        log.info("run %s: resuming step %d (pid %s)", self.journal.run, index, pid)
        self._pid = pid
        if isinstance(pid, int):
            self._step_groups.append(pid)
        self._sandboxed = bool(started.get("sandboxed"))
        if self.abort_reason is not None and pid is not None:
            asyncio.get_running_loop().create_task(self._terminate(pid))
        timer = self._step_timer(index, started.get("date"))
        try:
            code = await self._follow(index, self._wait_exit_file(index, pid))
        finally:
            if timer is not None:
                timer.cancel()
        return self._finish(index, code)

    async def _wait_exit_file(self, index: int, pid: int | None) -> int | None:
        gone_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            code = self.journal.read_exit(index)
            if code is not None:
                return code
            if pid is None or not _alive(pid):
                # The process is gone; give its spawner a moment to write the exit file.
                gone_since = gone_since or loop.time()
                if loop.time() - gone_since > ORPHAN_GRACE:
                    return None
            await asyncio.sleep(TAIL_INTERVAL)

    async def _follow(self, index: int, waiting: Awaitable[int | None]) -> int | None:
        """Journal the step's output as it grows until the process ends; its exit status."""
        task = asyncio.ensure_future(waiting)
        path = self.journal.step_log(index)
        position = self.journal.step_output_size(index)
        with open(path, "rb") as handle:
            handle.seek(position)
            while True:
                done = task.done()
                position = self._read_output(handle, index, position, final=done)
                if done:
                    break
                await asyncio.wait({task}, timeout=TAIL_INTERVAL)
        self._pid = None
        return task.result()

    def _read_output(
        self, handle: BinaryIO, index: int, position: int, *, final: bool = True
    ) -> int:
        while True:
            available = os.fstat(handle.fileno()).st_size - position
            if not final:
                available -= self.journal.holdback
            if available <= 0:
                return position
            data = handle.read(min(MAX_OUTPUT_CHUNK, available))
            if not data:
                return position
            self._emit(
                "output",
                step=index,
                offset=self._offset,
                file_offset=position,
                length=len(data),
                date=_now(),
            )
            self._offset += len(data)
            position += len(data)

    def _finish(self, index: int, code: int | None) -> str:
        if code is None:
            self._append_text(
                index, "\n[orchestra] the step's process was lost with its exit status\n"
            )
            status = "exception"
        elif self.abort_reason is not None:
            status = "aborted"
        else:
            status = "succeeded" if code == 0 else "failed"
        limits = self._limits()
        if limits:
            counted = "processes" in limits
            if status == "failed":
                refused = self.groups.refused(self.journal.run, index) if counted else 0
                said = step_limits.diagnosis(limits, code, refused, sandboxed=self._sandboxed)
                if said is not None:
                    self._append_text(index, f"\n[orchestra] {said}\n")
            if counted:
                self.groups.remove(self.journal.run, index)
        results, problem = step_results.collect(
            self._results_path(index),
            self.spawner.run_as,
            step_results.journaled_results(self.journal.events),
        )
        if problem is not None:
            self._append_text(index, f"\n[orchestra] results refused: {problem}\n")
            if status == "succeeded":
                status = "failed"
        ended: dict[str, Any] = {} if results is None else {"results": results}
        self._emit("step_ended", step=index, status=status, exit_code=code, date=_now(), **ended)
        return status

    def _results_path(self, index: int) -> Path:
        return step_results.results_path(self.journal.directory, self.journal.run, index)

    def _limits(self) -> dict[str, int]:
        given = self.journal.assignment.limits
        return {} if given is None else given.model_dump(exclude_none=True)

    def _cannot_sandbox(self) -> str:
        why = (
            "it runs with --sandbox never" if self.sandbox.mode == "never" else self.sandbox.problem
        )
        return f"this step must run in a sandbox, and this worker cannot sandbox: {why}"

    async def _fail_to_start(self, index: int, message: str) -> str:
        self._append_text(index, f"[orchestra] {message}\n")
        self._emit("step_ended", step=index, status="exception", exit_code=None, date=_now())
        return "exception"

    def _append_text(self, index: int, text: str) -> None:
        """Add a note of the worker's own to a step's log (when the disk allows)."""
        path = self.journal.step_log(index)
        try:
            position = path.stat().st_size if path.exists() else 0
            with open(path, "ab") as handle:
                handle.write(text.encode())
        except OSError as exc:
            log.warning("run %s: cannot write to the log: %s", self.journal.run, exc.strerror)
            return
        with open(path, "rb") as handle:
            handle.seek(position)
            self._read_output(handle, index, position)

    def _emit(self, kind: str, **fields: object) -> None:
        self.journal.append(kind, **fields)
        self.on_event(self.journal)

    def _context(self) -> CommandContext:
        assignment = self.journal.assignment
        return CommandContext(
            run_identifier=assignment.run,
            project_identifier=assignment.project,
            job_identifier=assignment.job,
            worker_identifier=self.worker_identifier,
            workspace=str(self.journal.workspace),
            parameters=assignment.parameters,
            environment=self.environment,
            secrets=assignment.secret_values or {},
        )

    def _step_variables(self, context: CommandContext) -> dict[str, str]:
        """What a step's environment adds to the worker's own (which the spawner has): its
        job's environment, rendered, then Orchestra's own variables (the job may not set
        ORCHESTRA_* names: domain/commands.py refuses them)."""
        assignment = self.journal.assignment
        return {
            **render_environment(assignment.environment, context),
            "ORCHESTRA_RUN": assignment.run,
            "ORCHESTRA_PROJECT": assignment.project,
            "ORCHESTRA_JOB": assignment.job,
            "ORCHESTRA_URL": assignment.url,
            "ORCHESTRA_WORKER": self.worker_identifier,
            "ORCHESTRA_WORKSPACE": str(self.journal.workspace),
        }


MIN_FREE_BYTES = 32 * 1024 * 1024


def disk_full(directory: Path) -> str | None:
    """A reason when the disk holding `directory` is (nearly) full, else None."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return None
    if free >= MIN_FREE_BYTES:
        return None
    return f"the worker's disk is full ({free // (1024 * 1024)} MiB free under {directory})"


def _signal_group(pid: int, signum: signal.Signals, *, but: int | None = None) -> None:
    """Signal the process group `pid` leads; `but` one of its processes."""
    if but is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
        return
    for member in _group_members(pid):
        if member != but:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signum)


def _group_members(pgid: int) -> list[int]:
    """The live processes of a process group, from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b") ", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: its parent (a dead spawner's successor, init) will reap it.
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().split(b") ", 1)[-1][:1] != b"Z"
    except OSError:
        return False
