"""A step's results, sent with its end, merged into `run.results` by the master on real
databases: in order, a later key replacing an earlier one, whether the reports come together or
apart, by PostgreSQL's one-statement path or the transaction; past the run's limit the report is
refused and nothing of it written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from orchestra.domain.results import MAX_RESULTS_BYTES
from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m
from orchestra.server import build_app
from orchestra.services.container import Services
from tests.conftest import build_services
from tests.integration.test_job_controls import add_worker
from tests.integration.test_reports import STEPS, at, claimed_run
from tests.integration.test_reports import services as services
from tests.integration.test_secrets import PASSWORD, form_token


def ended(sequence: int, step: int, results: dict[str, str] | None, status: str = "succeeded"):  # type: ignore[no-untyped-def]
    return m.StepEnded(
        sequence=sequence,
        step=step,
        status=status,  # type: ignore[arg-type]
        exit_code=0 if status == "succeeded" else 1,
        date=at(sequence),
        results=results,
    )


def step_events() -> list[m.Event]:
    return [
        m.StepStarted(sequence=1, step=0, date=at(1)),
        ended(2, 0, {"a": "1", "k": "first"}),
        m.StepStarted(sequence=3, step=1, date=at(3)),
        ended(4, 1, None),
        m.StepStarted(sequence=5, step=2, date=at(5)),
        ended(6, 2, {"k": "third", "z": "= and spaces "}, status="failed"),
        m.RunEnded(sequence=7, status="failed", date=at(7)),
    ]


async def test_results_merge_in_order_together_or_apart(
    services: Services, engine_name: str
) -> None:
    """Apart, each step's end is a report of its own: PostgreSQL merges its results in its
    one statement (never the transaction, but for the run's end)."""
    together_execution, together = await claimed_run(services)
    await together_execution.reports.apply_report("w", m.Report(run=together, events=step_events()))
    apart_execution, apart = await claimed_run(services)
    through_transaction: list[str] = []
    real = apart_execution.reports._apply_in_transaction

    async def recording(reports):  # type: ignore[no-untyped-def]
        through_transaction.extend(type(e).__name__ for _, r in reports for e in r.events)
        return await real(reports)

    apart_execution.reports._apply_in_transaction = recording  # type: ignore[method-assign]
    for event in step_events():
        await apart_execution.reports.apply_report("w", m.Report(run=apart, events=[event]))
    if engine_name == "postgresql":
        assert through_transaction == ["RunEnded"]

    expected = {"a": "1", "k": "third", "z": "= and spaces "}
    first = await services.runs.get_run("p", together)
    second = await services.runs.get_run("p", apart)
    assert first.results == second.results == expected
    assert first.status.value == second.status.value == "failed"


async def test_a_run_without_results_keeps_none(services: Services) -> None:
    execution, run = await claimed_run(services)
    await execution.reports.apply_report(
        "w", m.Report(run=run, events=[m.StepStarted(sequence=1, step=0, date=at(1))])
    )
    await execution.reports.apply_report("w", m.Report(run=run, events=[ended(2, 0, None)]))
    assert (await services.runs.get_run("p", run)).results is None


@pytest.mark.parametrize("alone", [True, False], ids=["step-end-alone", "with-output"])
async def test_results_past_the_run_s_limit_are_refused_and_nothing_written(
    services: Services,
    alone: bool,
) -> None:
    """Each report within the limit, the two merged past it: the second is refused, whichever
    path takes it (a step's end alone may take PostgreSQL's one statement, whose guard sends it
    on to the transaction)."""
    execution, run = await claimed_run(services)
    half = "v" * (MAX_RESULTS_BYTES // 2)
    await execution.reports.apply_report(
        "w",
        m.Report(
            run=run,
            events=[m.StepStarted(sequence=1, step=0, date=at(1)), ended(2, 0, {"a": half})],
        ),
    )
    second: list[m.Event] = [m.StepStarted(sequence=3, step=1, date=at(3))]
    await execution.reports.apply_report("w", m.Report(run=run, events=second))
    events: list[m.Event] = [ended(4, 1, {"b": half})]
    if not alone:
        events.insert(0, m.StepOutput(sequence=4, step=1, offset=0, data=b"x"))
        events[1] = ended(5, 1, {"b": half})
    with pytest.raises(ProtocolError, match="limit"):
        await execution.reports.apply_report("w", m.Report(run=run, events=events))
    shown = await services.runs.get_run("p", run)
    assert shown.results == {"a": half}
    assert shown.event_sequence == 3
    assert [s.status.value for s in shown.steps][:2] == ["succeeded", "running"]


async def test_results_reach_the_api_shape(services: Services) -> None:
    from orchestra.web.api.runs import run_fields

    execution, run = await claimed_run(services)
    await execution.reports.apply_report("w", m.Report(run=run, events=step_events()[:2]))
    shown = await services.runs.get_run("p", run)
    assert run_fields(shown)["results"] == {"a": "1", "k": "first"}
    _, other = await claimed_run(services)
    assert run_fields(await services.runs.get_run("p", other))["results"] == {}


@pytest.fixture
async def real_time_services(database_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    """The services of test_reports on the real clock (a login session ends by it)."""
    built = build_services(database_url, tmp_path)
    await built.projects.create_project({"identifier": "p"})
    await built.projects.create_job("p", {"identifier": "j", "steps": STEPS})
    await add_worker(built)
    yield built
    await built.close()


async def test_the_run_page_shows_results_escaped(real_time_services: Services) -> None:
    services = real_time_services
    execution, run = await claimed_run(services)
    results = {"package": "p-1.0.tar.gz", "note": "<script>alert(1)</script>"}
    events: list[m.Event] = [m.StepStarted(sequence=1, step=0, date=at(1)), ended(2, 0, results)]
    await execution.reports.apply_report("w", m.Report(run=run, events=events))
    _, without = await claimed_run(services)
    await services.users.create_user("admin", roles=["administrator"], password=PASSWORD)
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as site:
        login = await site.get("/login")
        done = await site.post(
            "/login", data={"user": "admin", "password": PASSWORD, "csrf_token": form_token(login)}
        )
        assert done.status_code == 303
        shown = await site.get(f"/projects/p/runs/{run}")
        assert shown.status_code == 200, (shown.status_code, shown.headers, shown.text[:300])
        page = shown.text
        other = (await site.get(f"/projects/p/runs/{without}")).text
    assert 'id="results"' in page and "p-1.0.tar.gz" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert 'id="results"' not in other
