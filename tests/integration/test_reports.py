"""A worker's reports applied to a run's steps, on real databases: a step's start and end
reported together are written as one, and must leave the same steps as when they come apart;
the steps after a failed one are skipped; reports of several runs go in one transaction, and
one that breaks the protocol fails alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.master_side import MasterSide
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


async def claimed_run(services: Services) -> tuple[MasterSide, str]:
    execution = MasterSide.build(services, "test")
    run = await services.runs.trigger("p", "j", {}, {"type": "api"})
    assert [r.identifier for r in await execution.dispatching.claim({run.identifier: "w"})] == [
        run.identifier
    ]
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
    await together_execution.reports.apply_report("w", m.Report(run=together, events=ended))
    apart_execution, apart = await claimed_run(services)
    for event in ended:
        await apart_execution.reports.apply_report("w", m.Report(run=apart, events=[event]))

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
    await execution.reports.apply_report("w", report)
    shown = await services.runs.get_run("p", run)
    assert shown.status.value == "failed"
    assert steps(shown) == [
        ("succeeded", 0, at(1), at(2)),
        ("failed", 2, at(3), at(4)),
        ("skipped", None, None, None),
    ]


def finished_events(first_sequence: int = 1) -> list[m.Event]:
    return [
        m.StepStarted(sequence=first_sequence, step=0, date=at(1)),
        m.StepEnded(sequence=first_sequence + 1, step=0, status="failed", exit_code=1, date=at(2)),
        m.RunEnded(sequence=first_sequence + 2, status="failed", date=at(3)),
    ]


async def test_a_report_that_breaks_the_protocol_fails_alone_in_its_group(
    services: Services,
) -> None:
    execution, good = await claimed_run(services)
    _, gapped = await claimed_run(services)
    _, foreign = await claimed_run(services)
    _, output = await claimed_run(services)
    with_output = [
        m.StepStarted(sequence=1, step=0, date=at(1)),
        m.StepOutput(sequence=2, step=0, offset=0, data=b"hello\n"),
        m.StepEnded(sequence=3, step=0, status="succeeded", exit_code=0, date=at(2)),
    ]

    outcomes = await execution.reports.apply_reports(
        [
            ("w", m.Report(run=good, events=finished_events())),
            ("w", m.Report(run=gapped, events=finished_events(first_sequence=2))),  # a gap
            ("other", m.Report(run=foreign, events=finished_events())),  # not its run
            ("w", m.Report(run=output, events=with_output)),
        ]
    )

    assert [type(o).__name__ for o in outcomes] == [
        "ReportResult",
        "ProtocolError",
        "ProtocolError",
        "ReportResult",
    ]
    assert outcomes[0].finished and outcomes[0].acknowledged == 3  # type: ignore[union-attr]
    assert "gap" in str(outcomes[1])
    shown = await services.runs.get_run("p", good)
    assert shown.status.value == "failed"
    assert steps(shown) == [
        ("failed", 1, at(1), at(2)),
        ("skipped", None, None, None),
        ("skipped", None, None, None),
    ]
    for refused in (gapped, foreign):  # nothing of theirs written
        untouched = await services.runs.get_run("p", refused)
        assert untouched.status.value == "running"
        assert [s.status.value for s in untouched.steps] == ["pending"] * 3
    streamed = await services.runs.get_run("p", output)
    assert streamed.status.value == "running" and streamed.log_size == 6
    assert steps(streamed)[:2] == [("succeeded", 0, at(1), at(2)), ("pending", None, None, None)]


async def test_reports_arriving_together_share_a_transaction_and_each_gets_its_answer(
    services: Services,
) -> None:
    execution, first = await claimed_run(services)
    runs = [first] + [(await claimed_run(services))[1] for _ in range(5)]
    commits = 0
    real_write = execution.reports._write

    async def counting_write(conn: object, writes: object) -> None:
        nonlocal commits
        commits += 1
        await real_write(conn, writes)  # type: ignore[arg-type]

    execution.reports._write = counting_write  # type: ignore[method-assign]
    bad = m.Report(run=runs[-1], events=finished_events(first_sequence=5))
    results = await asyncio.gather(
        *(
            execution.reports.report("w", m.Report(run=r, events=finished_events()))
            for r in runs[:-1]
        ),
        execution.reports.report("w", bad),
        return_exceptions=True,
    )

    assert [getattr(r, "finished", None) for r in results[:-1]] == [True] * 5
    assert isinstance(results[-1], ProtocolError)
    assert commits < len(runs)  # grouped: fewer transactions than reports
    for run in runs[:-1]:
        assert (await services.runs.get_run("p", run)).status.value == "failed"
    assert (await services.runs.get_run("p", runs[-1])).status.value == "running"


async def test_reports_whose_run_is_as_left_skip_the_transaction_and_the_rest_take_it(
    services: Services, engine_name: str
) -> None:
    """PostgreSQL applies a report whose run is where its worker left it by one statement
    (storage/reports.py); a resent event, a run given up on or a run's end (checked against
    its steps) goes through the transaction, with the same outcome as before."""
    execution, plain = await claimed_run(services)
    _, resent = await claimed_run(services)
    _, given_up = await claimed_run(services)
    _, ended = await claimed_run(services)
    first = [m.StepStarted(sequence=1, step=0, date=at(1))]
    await execution.reports.apply_report("w", m.Report(run=resent, events=first))
    async with services.db.transaction() as conn:
        await execution.endings.give_up(conn, given_up, "lost")
    through_transaction: list[str] = []
    real = execution.reports._apply_in_transaction

    async def recording(reports):  # type: ignore[no-untyped-def]
        through_transaction.extend(report.run for _, report in reports)
        return await real(reports)

    execution.reports._apply_in_transaction = recording  # type: ignore[method-assign]
    outcomes = await execution.reports.apply_reports(
        [
            ("w", m.Report(run=plain, events=finished_events()[:2])),
            ("w", m.Report(run=resent, events=finished_events())),  # its start sent again
            ("w", m.Report(run=given_up, events=finished_events())),
            ("w", m.Report(run=ended, events=finished_events())),
        ]
    )

    everything = [plain, resent, given_up, ended]
    expected_path = everything[1:] if engine_name == "postgresql" else everything
    assert through_transaction == expected_path
    assert [getattr(o, "acknowledged", None) for o in outcomes] == [2, 3, 0, 3]
    assert outcomes[2].discard_reason  # type: ignore[union-attr]
    shown = await services.runs.get_run("p", plain)
    assert shown.status.value == "running" and shown.start_date == at(1)
    assert steps(shown) == [
        ("failed", 1, at(1), at(2)),
        ("pending", None, None, None),
        ("pending", None, None, None),
    ]
    done = await services.runs.get_run("p", ended)
    assert done.status.value == "failed"
    assert steps(done) == [
        ("failed", 1, at(1), at(2)),
        ("skipped", None, None, None),
        ("skipped", None, None, None),
    ]
    again = await services.runs.get_run("p", resent)
    assert again.status.value == "failed" and steps(again)[0][:2] == ("failed", 1)
    assert (await services.runs.get_run("p", given_up)).status.value == "exception"


async def test_a_run_with_a_retry_policy_ended_by_a_plain_report_is_retried(
    services: Services,
) -> None:
    await services.projects.create_job(
        "p", {"identifier": "r", "steps": STEPS[:1], "retry": {"count": 1, "on": ["failed"]}}
    )
    execution = MasterSide.build(services, "test")
    run = await services.runs.trigger("p", "r", {}, {"type": "api"})
    await execution.dispatching.claim({run.identifier: "w"})

    (outcome,) = await execution.reports.apply_reports(
        [("w", m.Report(run=run.identifier, events=finished_events()))]
    )

    assert outcome.finished  # type: ignore[union-attr]
    runs, _ = await services.runs.list_runs("p", job="r")
    assert [(r.status.value, r.retry_of) for r in runs] == [
        ("pending", run.identifier),
        ("failed", None),
    ]


async def test_a_run_ended_succeeded_with_steps_not_done_is_recorded_as_exception(
    services: Services,
) -> None:
    """A worker's `succeeded` for a run whose second step is still running (its third never
    started): the run ends `exception` with the reason, the running step `exception`, the
    pending one skipped."""
    execution, run = await claimed_run(services)
    events: list[m.Event] = [
        m.StepStarted(sequence=1, step=0, date=at(1)),
        m.StepEnded(sequence=2, step=0, status="succeeded", exit_code=0, date=at(2)),
        m.StepStarted(sequence=3, step=1, date=at(3)),
    ]
    await execution.reports.apply_report("w", m.Report(run=run, events=events))
    ended = m.RunEnded(sequence=4, status="succeeded", date=at(4))
    result = await execution.reports.apply_report("w", m.Report(run=run, events=[ended]))

    assert result.finished and result.acknowledged == 4
    shown = await services.runs.get_run("p", run)
    assert shown.status.value == "exception"
    assert shown.reason == (
        "the worker reported the run succeeded while step 1 was running; recorded as exception"
    )
    assert steps(shown) == [
        ("succeeded", 0, at(1), at(2)),
        ("exception", None, at(3), at(4)),
        ("skipped", None, None, None),
    ]


async def test_a_run_ended_failed_with_no_failed_step_is_recorded_as_exception(
    services: Services,
) -> None:
    execution, run = await claimed_run(services)
    events: list[m.Event] = [
        m.StepStarted(sequence=1, step=0, date=at(1)),
        m.StepEnded(sequence=2, step=0, status="succeeded", exit_code=0, date=at(2)),
        m.RunEnded(sequence=3, status="failed", date=at(3)),
    ]
    await execution.reports.apply_report("w", m.Report(run=run, events=events))

    shown = await services.runs.get_run("p", run)
    assert shown.status.value == "exception"
    assert "failed with no failed step" in (shown.reason or "")
    assert [s[0] for s in steps(shown)] == ["succeeded", "skipped", "skipped"]


async def test_a_run_ended_exception_with_a_step_running_ends_that_step_too(
    services: Services,
) -> None:
    """What a worker reports when it fails itself mid-step: the run `exception` as reported,
    and no step left running."""
    execution, run = await claimed_run(services)
    events: list[m.Event] = [
        m.StepStarted(sequence=1, step=0, date=at(1)),
        m.RunEnded(sequence=2, status="exception", reason="the worker failed", date=at(2)),
    ]
    await execution.reports.apply_report("w", m.Report(run=run, events=events))

    shown = await services.runs.get_run("p", run)
    assert (shown.status.value, shown.reason) == ("exception", "the worker failed")
    assert steps(shown)[0] == ("exception", None, at(1), at(2))
    assert [s[0] for s in steps(shown)[1:]] == ["skipped", "skipped"]


async def test_a_whole_life_in_one_report_is_checked_against_its_own_steps(
    services: Services,
) -> None:
    """One report with the run's three steps and its end (a short run's usual report; on
    PostgreSQL the one-statement path takes it): applied, the run succeeded."""
    execution, run = await claimed_run(services)
    events: list[m.Event] = []
    for index in range(3):
        events += [
            m.StepStarted(sequence=2 * index + 1, step=index, date=at(2 * index + 1)),
            m.StepEnded(
                sequence=2 * index + 2,
                step=index,
                status="succeeded",
                exit_code=0,
                date=at(2 * index + 2),
            ),
        ]
    events.append(m.RunEnded(sequence=7, status="succeeded", date=at(7)))
    result = await execution.reports.apply_report("w", m.Report(run=run, events=events))

    assert result.finished and result.acknowledged == 7
    shown = await services.runs.get_run("p", run)
    assert (shown.status.value, shown.reason, shown.completion_date) == ("succeeded", None, at(7))
    assert [s[0] for s in steps(shown)] == ["succeeded"] * 3


async def test_an_end_whose_report_leaves_out_later_steps_is_checked_against_them(
    services: Services,
) -> None:
    """A report with the first step's whole life and the run's `succeeded`, for a run of three
    steps: the steps it leaves out are read (whichever path it takes), and the run ends
    `exception`, its pending steps skipped."""
    execution, run = await claimed_run(services)
    events: list[m.Event] = [
        m.StepStarted(sequence=1, step=0, date=at(1)),
        m.StepEnded(sequence=2, step=0, status="succeeded", exit_code=0, date=at(2)),
        m.RunEnded(sequence=3, status="succeeded", date=at(3)),
    ]
    result = await execution.reports.apply_report("w", m.Report(run=run, events=events))

    assert result.finished and result.acknowledged == 3
    shown = await services.runs.get_run("p", run)
    assert shown.status.value == "exception"
    assert shown.reason == (
        "the worker reported the run succeeded while step 1 was pending; recorded as exception"
    )
    assert [s[0] for s in steps(shown)] == ["succeeded", "skipped", "skipped"]
