"""orchestra.worker.agent: how a worker batches a run's events into reports. A report holding only
a step's start waits a moment (START_HOLD_SECONDS) for what follows, so that a short step's
start and end reach the master as one report (one transaction there, not two); a start with
nothing after it still goes, and an end never waits.

The agent and its journal (files in tmp_path) are the real ones; the connection is replaced by
a recorder of the frames the agent sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from orchestra.protocol import messages as m
from orchestra.worker.agent import START_HOLD_SECONDS, Agent, Held, WorkerOptions
from orchestra.worker.execution import RunExecution
from orchestra.worker.journal import Journal

RUN = "0f0e0d0c-0b0a-4908-8706-050403020100"


class Recorder:
    """Stands for the WebSocket connection: keeps what is sent."""

    def __init__(self) -> None:
        self.reports: list[m.Report] = []

    async def send(self, frame: bytes | str) -> None:
        message = m.decode_worker_message(frame)
        if isinstance(message, m.Report):
            self.reports.append(message)


async def poll(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def holding_agent(tmp_path: Path) -> tuple[Agent, Journal]:
    options = WorkerOptions(
        urls=["ws://127.0.0.1:9/unused"],
        user="worker",
        token="unused",
        identifier="w1",
        display_name="w1",
        properties={},
        executors=1,
        data_dir=tmp_path,
    )
    agent = Agent(options)
    assignment = m.Assign(
        run=RUN,
        project="p",
        job="j",
        parameters={},
        workspace="p/j",
        steps=[m.AssignedStep(name="build", command=["true"])],
        abort_grace=1.0,
        url="http://127.0.0.1:9",
    )
    journal = Journal.create(agent.runs_dir, assignment, tmp_path / "workspace")
    execution = RunExecution(journal, agent.spawner, "w1", {}, agent._on_event)
    agent.held[RUN] = Held(journal, execution, confirmed=True)
    return agent, journal


def emit(agent: Agent, journal: Journal, kind: str, **fields: object) -> None:
    journal.append(kind, date=datetime.now(UTC).isoformat(), **fields)
    agent._on_event(journal)


def kinds(report: m.Report) -> list[str]:
    return [event.kind for event in report.events]


async def test_a_short_steps_start_and_end_go_in_one_report(tmp_path: Path) -> None:
    agent, journal = holding_agent(tmp_path)
    connection = Recorder()
    sender = asyncio.create_task(agent._send(connection))  # type: ignore[arg-type]
    try:
        emit(agent, journal, "step_started", step=0, pid=1)
        await asyncio.sleep(0)  # one turn of the loop: the sender looks, and holds the start
        assert connection.reports == []
        emit(agent, journal, "step_ended", step=0, status="succeeded", exit_code=0)
        emit(agent, journal, "run_ended", status="succeeded", reason=None)
        await poll(lambda: bool(connection.reports))
        assert kinds(connection.reports[0]) == ["step_started", "step_ended", "run_ended"]
    finally:
        sender.cancel()


async def test_a_lone_start_is_sent_after_the_hold(tmp_path: Path) -> None:
    agent, journal = holding_agent(tmp_path)
    connection = Recorder()
    sender = asyncio.create_task(agent._send(connection))  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        emit(agent, journal, "step_started", step=0, pid=1)
        await poll(lambda: bool(connection.reports))
        assert time.monotonic() - started >= START_HOLD_SECONDS * 0.9
        assert kinds(connection.reports[0]) == ["step_started"]
        # What follows is not held: the end goes as soon as it is there.
        emit(agent, journal, "step_ended", step=0, status="succeeded", exit_code=0)
        await poll(lambda: len(connection.reports) == 2)
        assert kinds(connection.reports[1]) == ["step_ended"]
    finally:
        sender.cancel()
