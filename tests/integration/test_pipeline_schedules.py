"""Schedules of pipelines (services/pipeline_schedules.py) against real databases with a
controllable clock: each due time triggers one pipeline run, `last_run` is that pipeline run,
and the overlap policy is judged on the pipeline run's status."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestra.services.container import Services
from tests.conftest import build_services
from tests.helpers import ManualClock

T0 = datetime(2026, 6, 1, 11, 59, 30, tzinfo=UTC)


async def setup(services: Services) -> None:
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job(
        "p",
        {
            "identifier": "j",
            "parameters": [{"key": "who"}],
            "steps": [{"name": "a", "command": ["echo", "{parameters[who]}"]}],
        },
    )
    await services.pipelines.create_pipeline(
        "p",
        {
            "identifier": "pl",
            "parameters": [{"key": "name", "default": "x"}],
            "nodes": [{"identifier": "n", "job": "j", "parameters": {"who": "{parameters[name]}"}}],
        },
    )
    await services.projects.create_schedule(
        "p",
        {
            "identifier": "s",
            "pipeline": "pl",
            "expression": "* * * * *",
            "parameters": {"name": "scheduled"},
        },
    )


async def test_a_schedule_of_a_pipeline_fires_pipeline_runs(
    database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    services = build_services(database_url, tmp_path, clock)
    try:
        await setup(services)
        clock.advance(31)
        assert await services.scheduler.tick() == 1
        assert await services.scheduler.tick() == 0
        items, _ = await services.pipeline_runs.list_runs("p")
        (first,) = items
        assert first["source"] == {"type": "schedule", "schedule": "s"}
        assert first["parameters"] == {"name": "scheduled"}
        schedule = await services.projects.get_schedule("p", "s")
        assert schedule.last_run == first["identifier"]
        (run,), _ = await services.runs.list_runs("p")
        assert run.parameters == {"who": "scheduled"} and run.pipeline_run == first["identifier"]

        clock.advance(60)  # the first pipeline run is still running: skipped (overlap skip)
        assert await services.scheduler.tick() == 0
        schedule = await services.projects.get_schedule("p", "s")
        assert schedule.last_skip_reason is not None

        await services.pipeline_runs.cancel("p", first["identifier"])  # now final
        clock.advance(60)
        assert await services.scheduler.tick() == 1
        items, _ = await services.pipeline_runs.list_runs("p")
        assert len(items) == 2
        schedule = await services.projects.get_schedule("p", "s")
        assert schedule.last_run == items[0]["identifier"] != first["identifier"]
    finally:
        await services.close()
