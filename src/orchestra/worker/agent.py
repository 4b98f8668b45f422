"""The worker agent: connects to a master, runs what it is assigned, reports everything.

Runs are journaled on disk before they start; their events are sent in order and dropped only
once acknowledged. The agent reconnects with exponential backoff and full jitter, rotating over
the master URLs it was given, and on each connection tells the master which runs it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from orchestra import __version__
from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m
from orchestra.worker.data_dir import give_workspace, prepare_data_dir
from orchestra.worker.execution import RunExecution, disk_full
from orchestra.worker.journal import Journal
from orchestra.worker.limits import ProcessGroups
from orchestra.worker.run_as import RunAs
from orchestra.worker.sandbox import Sandbox, start_sandbox
from orchestra.worker.spares import Spares
from orchestra.worker.spawner_client import Spawner
from orchestra.worker.uploads import ServerLink, websocket_url

log = logging.getLogger(__name__)
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
SEND_WINDOW = 64  # events in flight per run before waiting for acknowledgements
SEND_BATCH_BYTES = 4 << 20  # output in one report, about
STOP_FLUSH_SECONDS = 3.0
# A report holding nothing but a step's start waits this long for what follows: a short step's
# output and end then go in the same report (one transaction on the master, not two). What the
# master shows lags by as much; the step's start_date is the worker's clock either way.
START_HOLD_SECONDS = 0.01
DISK_CHECK_SECONDS = 2.0
FATAL_CLOSE_CODES = {m.CLOSE_UNAUTHORIZED: 3, m.CLOSE_FORBIDDEN: 3}
REFUSED_HANDSHAKE_STATUSES = {401, 403}


@dataclass
class WorkerOptions:
    urls: list[str]
    user: str
    token: str
    identifier: str
    display_name: str
    properties: dict[str, str]
    executors: int
    data_dir: Path
    # Steps in a sandbox (worker/sandbox.py): auto (those of jobs that ask), always, never;
    # and what they must not see besides the data directory (a token file, a server's files).
    sandbox: str = "auto"
    hidden: list[Path] = field(default_factory=list)
    # The OS user steps run as (--run-as; None: the worker's own), and the umask they get (the
    # one the worker was started with, before it made its own files private: worker/app.py).
    run_as: RunAs | None = None
    step_umask: int | None = None


@dataclass
class Held:
    """A run this worker holds: its journal, its execution, what was sent."""

    journal: Journal
    execution: RunExecution
    task: asyncio.Task[None] | None = None
    sent: int = 0
    confirmed: bool = False  # the master said to resume it (or assigned it) on this connection
    hold_until: float = 0.0  # loop time before which a lone step start is not sent


@dataclass
class Agent:
    options: WorkerOptions
    spawner: Spawner = field(default_factory=Spawner)
    held: dict[str, Held] = field(default_factory=dict)
    exit_code: int = 0
    _connection: ClientConnection | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _draining: bool = False
    _accepting: bool = True  # what this worker last told the master about its disk
    _heartbeat: float = 5.0
    # The agent's environment, read once and without its credentials: the spawner is started
    # with it, and steps get it with their ORCHESTRA_* variables added (worker/execution.py).
    _environment: dict[str, str] = field(default_factory=lambda: step_base_environment(os.environ))
    sandbox: Sandbox = field(default_factory=Sandbox)
    groups: ProcessGroups | None = None

    @cached_property
    def link(self) -> ServerLink:  # artifacts' transfers, over HTTP with the worker's token
        return ServerLink(list(self.options.urls), self.options.token)

    @property
    def runs_dir(self) -> Path:
        return self.options.data_dir / "runs"

    @property
    def workspaces_dir(self) -> Path:
        return self.options.data_dir / "workspaces"

    @cached_property
    def spares(self) -> Spares:
        """Finished journals' directories, emptied for the next runs (two per executor)."""
        return Spares(self.options.data_dir / "spare", keep=2 * self.options.executors)

    # Start and stop.

    async def run(self) -> int:
        if not self._prepare_sandbox():
            return 2
        prepare_data_dir(self.options.data_dir, self.options.run_as)
        self.spares.reset()
        self.groups = ProcessGroups(self.options.identifier)
        run_as = self.options.run_as
        environment = self._environment if run_as is None else run_as.environment(self._environment)
        await self.spawner.start(environment, run_as, self.options.step_umask)
        if run_as is not None:
            log.info(
                "steps run as %s; this worker's journals and token are not theirs to read",
                run_as.describe(),
            )
        self._recover()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        try:
            await self._connect_forever()
        finally:
            await self.spawner.close()
            self.groups.close()
        return self.exit_code

    def _prepare_sandbox(self) -> bool:
        """Whether bwrap works here, found by running it once, said in the log and in the
        `sandbox` property; False when every step must be sandboxed and none can be."""
        hidden = [self.options.data_dir, *self.options.hidden]
        found = start_sandbox(
            self.options.sandbox, hidden, self.options.properties, self.options.run_as
        )
        if found is None:
            return False
        self.sandbox = found
        return True

    def stop(self) -> None:
        """Stop: abort what runs, send what can be sent for a few seconds, then exit."""
        if self._stopping:
            return
        log.info("worker %s stopping", self.options.identifier)
        self._stopping = True
        for held in self.held.values():
            # An upload of artifacts is left to the next start (worker/artifact_phase.py).
            held.execution.abort("the worker was stopped", transfers=False)
        self._wake.set()
        asyncio.get_running_loop().call_later(STOP_FLUSH_SECONDS + 10, self._force_close)

    def _force_close(self) -> None:
        if self._connection is not None:
            asyncio.get_running_loop().create_task(self._connection.close())

    def _recover(self) -> None:
        """Reopen every journal left on disk and resume its execution."""
        for directory in sorted(self.runs_dir.iterdir()):
            journal = Journal.load(directory)
            if journal is None:
                log.warning("discarding incomplete journal %s", directory)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            log.info("recovered run %s from disk", journal.run)
            self._hold(journal)

    def _hold(self, journal: Journal) -> Held:
        execution = RunExecution(
            journal,
            self.spawner,
            self.options.identifier,
            self._environment,
            self._on_event,
            self.sandbox,
            self.groups,
            self.link,
        )
        held = Held(journal, execution)
        self.held[journal.run] = held
        held.task = asyncio.get_running_loop().create_task(self._execute(held))
        return held

    async def _execute(self, held: Held) -> None:
        try:
            await held.execution.execute()
        except Exception:
            log.exception("run %s: execution failed", held.journal.run)
            if not held.journal.ended():
                held.journal.append(
                    "run_ended", status="exception", reason="the worker failed", date=_now()
                )
                self._on_event(held.journal)

    def _on_event(self, journal: Journal) -> None:
        held = self.held.get(journal.run)
        if held is not None and journal.events and journal.events[-1]["kind"] == "step_started":
            held.hold_until = asyncio.get_running_loop().time() + START_HOLD_SECONDS
        self._wake.set()

    # Connection.

    async def _connect_forever(self) -> None:
        attempt = 0
        index = 0
        while not (self._stopping and self._all_flushed()):
            url = websocket_url(self.options.urls[index % len(self.options.urls)])
            index += 1
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {self.options.token}"},
                    max_size=m.MAX_FRAME_BYTES,
                    # Output is mostly sent once and stored as it is: compressing every frame
                    # cost the worker more than everything else it does while streaming.
                    compression=None,
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=20,
                ) as connection:
                    self._connection = connection
                    self.link.preferred = (index - 1) % len(self.options.urls)
                    attempt = 0
                    await self._session(connection)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                reason = exc.rcvd.reason if exc.rcvd else ""
                log.warning("connection to %s closed: %s %s", url, code, reason)
                if code in FATAL_CLOSE_CODES:
                    log.error("the master refused this worker: %s", reason)
                    self.exit_code = FATAL_CLOSE_CODES[code]
                    return
                if code == m.CLOSE_DISCONNECT_REQUESTED:
                    log.info("disconnect requested by the master; exiting")
                    return
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in REFUSED_HANDSHAKE_STATUSES:
                    # The master checks the token before accepting the connection: a revoked,
                    # expired or unknown token, or a user without the worker role.
                    log.error("the master refused this worker's credentials (HTTP %s)", status)
                    self.exit_code = 3
                    return
                log.warning("master %s answered %s", url, status)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                log.warning("cannot connect to %s: %s", url, exc)
            except ProtocolError as exc:
                log.error("protocol error with %s: %s", url, exc)
            finally:
                self._connection = None
            if self._stopping and (self._all_flushed() or attempt > 2):
                return
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            attempt += 1
            await asyncio.sleep(delay)

    def _all_flushed(self) -> bool:
        return not self.held  # a run leaves `held` once its end is acknowledged

    async def _session(self, connection: ClientConnection) -> None:
        hello = m.Hello(
            protocol=m.PROTOCOL_VERSION,
            identifier=self.options.identifier,
            display_name=self.options.display_name,
            version=__version__,
            properties=dict(self.options.properties),
            executors=self.options.executors,
            runs=sorted(self.held),
        )
        await connection.send(m.encode(hello))
        welcome = m.decode_master_message(await asyncio.wait_for(connection.recv(), 30))
        if not isinstance(welcome, m.Welcome):
            raise ProtocolError("the master did not welcome this worker")
        self._heartbeat = welcome.heartbeat_interval
        for run, decision in welcome.runs.items():
            held = self.held.get(run)
            if held is None:
                continue
            if decision.action == "resume":
                held.journal.acknowledged = decision.acknowledged
                held.sent = decision.acknowledged
                held.confirmed = True
                self._forget_if_done(held)
            else:
                await self._report_outcome(connection, held)
                self._discard(run, decision.reason or "discarded by the master")
        log.info("worker %s connected", self.options.identifier)
        self._accepting = True  # what the master assumes of a new connection
        tasks = [
            asyncio.create_task(self._receive(connection)),
            asyncio.create_task(self._send(connection)),
            asyncio.create_task(self._beat(connection)),
            asyncio.create_task(self._watch_disk(connection)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    async def _receive(self, connection: ClientConnection) -> None:
        async for frame in connection:
            message = m.decode_master_message(frame)
            if isinstance(message, m.Assign):
                self._assign(message, frame if isinstance(frame, str) else None)
            elif isinstance(message, m.Ack):
                self._acknowledge(message)
            elif isinstance(message, m.Abort):
                held = self.held.get(message.run)
                if held is not None:
                    log.info("run %s: abort requested", message.run)
                    held.execution.abort()
            elif isinstance(message, m.Discard):
                self._discard(message.run, message.reason)
            elif isinstance(message, m.Drain):
                log.info("the master asked this worker to finish its runs and disconnect")
                self._draining = True

    async def _send(self, connection: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            for held in list(self.held.values()):
                if not held.confirmed:
                    continue
                if held.hold_until > loop.time() and not self._stopping:
                    if held.journal.only_starts_after(held.sent):
                        loop.call_at(held.hold_until, self._wake.set)
                        continue
                in_flight = held.sent - held.journal.acknowledged
                if in_flight >= SEND_WINDOW:
                    continue
                unsent = held.journal.unsent_frame(
                    held.sent, SEND_WINDOW - in_flight, SEND_BATCH_BYTES
                )
                if unsent is not None:
                    frame, last = unsent
                    if held.journal.ends_step_between(held.sent, last):
                        # A step may have filled the disk: say so before the master, seeing
                        # this executor free, hands it the next run.
                        await self._report_capacity(connection)
                    await connection.send(frame)
                    held.sent = last
                    self._wake.set()
            if self._stopping and self._all_flushed():
                await connection.close()
                return
            await self._wake.wait()

    async def _watch_disk(self, connection: ClientConnection) -> None:
        """Tell the master to send no runs while the disk is full, and again when it has room;
        journals waiting to be written are written then."""
        while True:
            await self._report_capacity(connection)
            if self._accepting:
                for held in list(self.held.values()):
                    held.journal.save()
            if self.groups is not None:
                self.groups.sweep()  # steps' cgroups whose last processes have gone since
            await asyncio.sleep(min(self._heartbeat, DISK_CHECK_SECONDS))

    async def _report_capacity(self, connection: ClientConnection) -> None:
        full = disk_full(self.options.data_dir)
        if (full is None) != self._accepting:
            self._accepting = full is None
            await connection.send(m.encode(m.Capacity(accepting=self._accepting, reason=full)))

    async def _beat(self, connection: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            await connection.send(m.encode(m.Heartbeat()))

    # Messages.

    def _assign(self, assignment: m.Assign, text: str | None = None) -> None:
        if assignment.run in self.held:
            return
        if self._stopping:
            return  # the master will see it missing at the next hello and hand it out again
        workspace = self._claim_workspace(assignment.workspace)
        try:
            journal = Journal.create(self.runs_dir, assignment, workspace, self.spares, text)
        except OSError as exc:
            # Without a journal the run cannot be taken. Reconnecting makes the master see the
            # run missing from this worker's hello and hand it to another: nothing ran.
            shutil.rmtree(self.runs_dir / assignment.run, ignore_errors=True)
            raise ConnectionError(f"cannot journal run {assignment.run}: {exc.strerror}") from exc
        held = self._hold(journal)
        held.confirmed = True
        # One line a run at INFO (when it is done with, below): the log is written per line.
        log.debug("run %s assigned (%s/%s)", assignment.run, assignment.project, assignment.job)

    def _acknowledge(self, ack: m.Ack) -> None:
        held = self.held.get(ack.run)
        if held is None:
            return
        held.journal.acknowledged = max(held.journal.acknowledged, ack.sequence)
        self._forget_if_done(held)
        self._wake.set()

    def _forget_if_done(self, held: Held) -> None:
        journal = held.journal
        if journal.ended() and journal.acknowledged >= len(journal.events):
            self.held.pop(journal.run, None)
            journal.remove(self.spares)
            assignment = journal.assignment
            log.info(
                "run %s (%s/%s) %s, reported and acknowledged",
                journal.run,
                assignment.project,
                assignment.job,
                _ended_status(journal),
            )
            if self._draining and not self.held:
                log.info("all runs finished; the master will close the connection")

    async def _report_outcome(self, connection: ClientConnection, held: Held) -> None:
        """Tell the master how a run it no longer expects ended here (it ran on during a
        network cut longer than the lease): the master refuses it and records it on the run
        as `late_report`."""
        outcome = held.journal.outcome()
        if outcome is not None:
            await connection.send(m.encode(m.Report(run=held.journal.run, events=[outcome])))

    def _discard(self, run: str, reason: str) -> None:
        held = self.held.pop(run, None)
        if held is None:
            return
        log.warning("run %s discarded: %s", run, reason)
        held.execution.abort(reason)
        if held.task is not None:
            held.task.add_done_callback(lambda _t: held.journal.remove(self.spares))
        else:
            held.journal.remove(self.spares)

    # Workspaces: one run at a time in each directory (a busy one gets an @2, @3... sibling).

    def _claim_workspace(self, name: str) -> Path:
        busy = {h.journal.workspace for h in self.held.values()}
        base = self.workspaces_dir / name
        candidate, number = base, 1
        while candidate in busy:
            number += 1
            candidate = base.with_name(f"{base.name}@{number}")
        base.parent.mkdir(parents=True, exist_ok=True)
        give_workspace(candidate, self.options.run_as)
        return candidate


# Never handed to a step: a job's command must not act as its worker, nor reach the database
# of a server whose local worker this is.
# Orchestra's own variables (the worker's token, the instance key and the database's URL a shell
# may have exported, the client's settings) are the worker's, never its steps': each step gets
# the ORCHESTRA_* variables of its run instead (worker/execution.py).
WORKER_ONLY_PREFIX = "ORCHESTRA_"


def step_base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment as its steps see it: without Orchestra's own variables."""
    return {k: v for k, v in environ.items() if not k.upper().startswith(WORKER_ONLY_PREFIX)}


def _ended_status(journal: Journal) -> str:
    ended = journal.events[-1] if journal.events else {}
    return str(ended.get("status", "ended"))


def _now() -> str:
    return datetime.now(UTC).isoformat()
