"""Secrets in runs on the master's side, on real databases: what an assignment carries (the
secrets a run names, its secret parameters decrypted), the refusal of a run that names a missing
secret, the master's own masking of reported output (also on a master that did not dispatch the
run), and the cost of all this for a run without secrets: no statement more."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from orchestra.domain.models import Run
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.master_side import MasterSide
from orchestra.services.report_applier import ReportApplier
from orchestra.storage import direct
from tests.conftest import build_services
from tests.helpers import ManualClock
from tests.integration.test_job_controls import add_worker

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = "s3cr3t-token-value"
PASSWORD = "hunter2-parameter"


@pytest.fixture
async def services(database_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    built = build_services(database_url, tmp_path, ManualClock(T0))
    await built.projects.create_project({"identifier": "p"})
    await built.secrets.put_secret("p", "TOKEN", TOKEN)
    jobs: list[dict[str, Any]] = [
        {
            "identifier": "uses",
            "parameters": [{"key": "password", "secret": True}],
            "steps": [
                {"name": "s", "command": ["echo", "{secrets[TOKEN]}", "{parameters[password]}"]}
            ],
            "environment": {"API_TOKEN": "Bearer {secrets[TOKEN]}"},
        },
        {"identifier": "missing", "steps": [{"name": "s", "command": ["echo", "{secrets[NOPE]}"]}]},
        {"identifier": "plain", "steps": [{"name": "s", "command": ["echo", "secrets"]}]},
    ]
    for job in jobs:
        await built.projects.create_job("p", job)
    await add_worker(built)
    yield built
    await built.close()


async def claimed(services: Services, side: MasterSide, job: str, **parameters: str) -> Run:
    run = await services.runs.trigger("p", job, parameters, {"type": "api"})
    (won,) = await side.dispatching.claim({run.identifier: "w"})
    return won


def output_report(run: str, data: bytes) -> m.Report:
    return m.Report(
        run=run,
        events=[
            m.StepStarted(sequence=1, step=0, date=T0),
            m.StepOutput(sequence=2, step=0, offset=0, data=data),
        ],
    )


async def stored_log(services: Services, run: str) -> bytes:
    return b"".join([chunk async for chunk in await services.runs.read_log("p", run)])


@pytest.fixture
def statements(services: Services) -> Iterator[list[str]]:
    """Every statement executed meanwhile (through SQLAlchemy or below it)."""
    seen: list[str] = []
    for engine in services.db.engines:

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _seen(*arguments: Any) -> None:
            seen.append(arguments[2])

    with direct.observing(seen.append):
        yield seen


async def test_an_assignment_carries_the_secrets_its_run_names_and_its_parameters_in_clear(
    services: Services,
) -> None:
    side = MasterSide.build(services, "test")
    run = await claimed(services, side, "uses", password=PASSWORD)
    assert run.environment == {"API_TOKEN": "Bearer {secrets[TOKEN]}"}
    assert PASSWORD not in run.parameters.values()  # stored encrypted

    delivery = await side.run_secrets.delivery(run)

    assert delivery.refused is None
    assert delivery.secret_values == {"TOKEN": TOKEN}
    assert delivery.parameters == {"password": PASSWORD}
    assert sorted(delivery.masks) == sorted([TOKEN, PASSWORD])


async def test_a_run_naming_a_missing_secret_is_refused_with_its_reason(
    services: Services,
) -> None:
    side = MasterSide.build(services, "test")
    run = await claimed(services, side, "missing")

    delivery = await side.run_secrets.delivery(run)

    assert delivery.refused == "secret NOPE is not set in project p"
    assert delivery.secret_values is None
    await side.dispatching.give_up(run.identifier, delivery.refused)
    ended = await services.runs.get_run("p", run.identifier)
    assert ended.status.value == "exception"
    assert ended.reason == "secret NOPE is not set in project p"
    assert [s.status.value for s in ended.steps] == ["skipped"]


async def test_the_master_masks_reported_output_even_for_a_run_it_did_not_dispatch(
    services: Services,
) -> None:
    dispatching = MasterSide.build(services, "a")
    run = await claimed(services, dispatching, "uses", password=PASSWORD)
    await dispatching.run_secrets.delivery(run)
    # Another master (the worker reconnected there): nothing kept, read at the first output.
    other = MasterSide.build(services, "b")
    data = f"token={TOKEN} password={PASSWORD} again {TOKEN}\n".encode()

    await other.reports.apply_report("w", output_report(run.identifier, data))

    stored = await stored_log(services, run.identifier)
    assert len(stored) == len(data)  # the offsets stay the worker's
    assert TOKEN.encode() not in stored and PASSWORD.encode() not in stored
    assert (
        stored
        == (
            f"token={'*' * len(TOKEN)} password={'*' * len(PASSWORD)} again {'*' * len(TOKEN)}\n"
        ).encode()
    )


async def test_a_run_without_secrets_costs_no_statement_to_mask(
    services: Services, statements: list[str]
) -> None:
    side = MasterSide.build(services, "test")
    masked_run = await claimed(services, side, "plain")
    await side.run_secrets.delivery(masked_run)  # as the dispatcher does before sending
    bare_run = await claimed(services, side, "plain")
    bare = ReportApplier(services.db, services.clock, services.events, side.endings)
    data = b"nothing secret here\n"

    statements.clear()
    await bare.apply_report("w", output_report(bare_run.identifier, data))
    without = list(statements)
    statements.clear()
    await side.reports.apply_report("w", output_report(masked_run.identifier, data))

    assert len(statements) == len(without) > 0
    assert await stored_log(services, masked_run.identifier) == data
