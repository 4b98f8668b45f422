"""A worker's reports applied to a run's steps, on real databases: a step's start and end
reported together are written as one, and must leave the same steps as when they come apart;
the steps after a failed one are skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.execution import ExecutionService
from tests.conftest import build_services
from tests.helpers import ManualClock
from tests.integration.test_job_controls import add_worker

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STEPS = [{"name": n, "command": ["true"]} for n in ("build", "test", "deploy")]


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def services(database_url: str, tmp_path: Path) -> Services:
    built = build_services(database_url, tmp_path, ManualClock(T0))
    await built.projects.create_project({"identifier": "p"})
    await built.projects.create_job("p", {"identifier": "j", "steps": STEPS})
    await add_worker(built)
    yield built  # type: ignore[misc]
    await built.close()


async def claimed_run(services: Services) -> tuple[ExecutionService, str]:
    execution = ExecutionService(
        services.db, services.clock, services.events, services.runs, "test"
    )
    run = await services.runs.trigger("p", "j", {}, {"type": "api"})
    assert [r.identifier for r in await execution.claim({run.identifier: "w"})] == [run.identifier]
    return execution, run.identifier


def steps(run: object) -> list[tuple[str, object, object, object]]:
    return [(s.status.value, s.exit_code, s.start_date, s.completion_date) for s in run.steps]  # type: ignore[attr-defined]


async def test_starts_and_ends_reported_together_or_apart_leave_the_same_steps(
    services: Services,
) -> None:
    ended = [
        m.StepStarted(sequence=1, step=0, date=at(1)),
        m.StepEnded(sequence=2, step=0, status="succeeded", exit_code=0, date=at(2)),
        m.StepStarted(sequence=3, step=1, date=at(3)),
        m.StepEnded(sequence=4, step=1, status="succeeded", exit_code=0, date=at(4)),
        m.StepStarted(sequence=5, step=2, date=at(5)),
        m.StepEnded(sequence=6, step=2, status="succeeded", exit_code=0, date=at(6)),
        m.RunEnded(sequence=7, status="succeeded", date=at(7)),
    ]
    together_execution, together = await claimed_run(services)
    await together_execution.apply_report("w", m.Report(run=together, events=ended))
    apart_execution, apart = await claimed_run(services)
    for event in ended:
        await apart_execution.apply_report("w", m.Report(run=apart, events=[event]))

    first = await services.runs.get_run("p", together)
    second = await services.runs.get_run("p", apart)
    expected = [("succeeded", 0, at(2 * i + 1), at(2 * i + 2)) for i in range(3)]
    assert steps(first) == steps(second) == expected
    assert first.status.value == second.status.value == "succeeded"
    assert first.start_date == second.start_date == at(1)


async def test_the_steps_after_a_failed_one_are_skipped(services: Services) -> None:
    execution, run = await claimed_run(services)
    report = m.Report(
        run=run,
        events=[
            m.StepStarted(sequence=1, step=0, date=at(1)),
            m.StepEnded(sequence=2, step=0, status="succeeded", exit_code=0, date=at(2)),
            m.StepStarted(sequence=3, step=1, date=at(3)),
            m.StepEnded(sequence=4, step=1, status="failed", exit_code=2, date=at(4)),
            m.RunEnded(sequence=5, status="failed", date=at(5)),
        ],
    )
    await execution.apply_report("w", report)
    shown = await services.runs.get_run("p", run)
    assert shown.status.value == "failed"
    assert steps(shown) == [
        ("succeeded", 0, at(1), at(2)),
        ("failed", 2, at(3), at(4)),
        ("skipped", None, None, None),
    ]
