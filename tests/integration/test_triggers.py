"""Concurrent triggers committed in groups (services/triggers.py), on real databases: each
request gets its own run, committed, or its own error; a request that cannot be honoured or a
group that fails never costs another request its run, and nothing is half written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from orchestra.errors import InvalidInput, NotFound
from orchestra.services.container import Services
from orchestra.storage import direct
from tests.conftest import build_services
from tests.helpers import ManualClock

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
JOB = {
    "identifier": "j",
    "steps": [
        {"name": "a", "command": ["echo", "{parameters[color]}"]},
        {"name": "b", "command": ["true"]},
    ],
    "parameters": [{"key": "color", "choices": ["red", "blue"], "default": "red"}],
}


@pytest.fixture
async def services(database_url: str, tmp_path: Path) -> Services:
    built = build_services(database_url, tmp_path, ManualClock(T0))
    await built.projects.create_project({"identifier": "p"})
    await built.projects.create_job("p", JOB)
    yield built  # type: ignore[misc]
    await built.close()


@pytest.fixture
def run_inserts(services: Services) -> Iterator[list[int]]:
    """How many statements inserted runs: one per group of triggers, whatever the engine
    (SQLite's in a transaction, below SQLAlchemy; PostgreSQL's one statement on its own)."""
    inserts = [0]

    def counted(sql: str) -> None:
        if "INSERT INTO run (" in sql:
            inserts[0] += 1

    for engine in services.db.engines:

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _counted(*arguments: Any) -> None:
            counted(arguments[2])

    with direct.observing(counted):
        yield inserts


async def stored_runs(services: Services) -> list[Any]:
    runs, _ = await services.runs.list_runs("p", limit=500)
    return runs


async def test_concurrent_triggers_each_get_their_run_or_their_own_error(
    services: Services, run_inserts: list[int]
) -> None:
    inserts = run_inserts
    good = [
        services.runs.trigger("p", "j", {"color": color}, {"type": "api", "n": n})
        for n, color in enumerate(["red", "blue"] * 20)
    ]
    bad = [
        services.runs.trigger("p", "j", {"color": "green"}, {"type": "api"}),
        services.runs.trigger("p", "nope", {}, {"type": "api"}),
        services.runs.trigger("nowhere", "j", {}, {"type": "api"}),
        services.runs.trigger("p", "j", {}, {"type": "api"}, priority="high"),
    ]
    answers = await asyncio.gather(*good, *bad, return_exceptions=True)

    runs, errors = answers[: len(good)], answers[len(good) :]
    assert [type(e) for e in errors] == [InvalidInput, NotFound, NotFound, InvalidInput]
    assert str(errors[0]) == "parameter 'color' must be one of ['red', 'blue']"
    assert str(errors[1]) == "no job 'nope' in project 'p'"
    assert str(errors[2]) == "no project 'nowhere'"
    assert len({r.identifier for r in runs}) == len(good)
    # Fewer transactions than runs: they were grouped (one for the first, one for the rest).
    assert inserts[0] < len(good) / 4
    stored = {r.identifier: r for r in await stored_runs(services)}
    assert set(stored) == {r.identifier for r in runs}  # the refused ones wrote nothing
    for n, run in enumerate(runs):
        again = await services.runs.get_run("p", run.identifier)
        assert again.parameters == {"color": ["red", "blue"][n % 2]}
        assert again.source == {"type": "api", "n": n}
        assert [s.name for s in again.steps] == ["a", "b"]
        assert [s.status.value for s in again.steps] == ["pending", "pending"]
        assert run.steps == again.steps and run.status == again.status == "pending"


async def test_a_group_that_fails_is_tried_one_by_one(services: Services) -> None:
    """A request whose run cannot be written (here a source that is not JSON) fails the
    group's transaction: the others are committed one by one, and only it fails."""
    unwritable = {"type": "api", "thing": object()}
    answers = await asyncio.gather(
        *(services.runs.trigger("p", "j", {}, {"type": "api", "n": n}) for n in range(5)),
        services.runs.trigger("p", "j", {}, unwritable),
        *(services.runs.trigger("p", "j", {}, {"type": "api", "n": n}) for n in range(5, 10)),
        return_exceptions=True,
    )

    failed = [a for a in answers if isinstance(a, BaseException)]
    assert len(failed) == 1 and answers[5] is failed[0]
    made = [a for a in answers if not isinstance(a, BaseException)]
    stored = await stored_runs(services)
    assert sorted(r.source["n"] for r in stored) == list(range(10))
    assert {r.identifier for r in stored} == {r.identifier for r in made}
    for run in stored:
        assert len((await services.runs.get_run("p", run.identifier)).steps) == 2


async def test_a_trigger_alone_is_committed_at_once(
    services: Services, run_inserts: list[int]
) -> None:
    inserts = run_inserts
    run = await services.runs.trigger("p", "j", {}, {"type": "api"})
    assert inserts[0] == 1
    assert (await services.runs.get_run("p", run.identifier)).status == "pending"
