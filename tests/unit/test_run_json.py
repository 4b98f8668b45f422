"""orchestra.web.api.runs: the runs list and a run's detail encode runs straight to JSON; the
bytes must be those the RunOut model (the published schema) makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core
import pytest
from pydantic import TypeAdapter

from orchestra.domain.models import Run, RunStep
from orchestra.domain.statuses import RunStatus, StepStatus
from orchestra.web.api.runs import run_fields
from orchestra.web.api.schemas import Page, RunOut, RunStepOut

NOW = datetime(2026, 11, 28, 12, 30, 15, 123456, tzinfo=UTC)


def step(index: int, **changes: Any) -> RunStep:
    values: dict[str, Any] = {
        "index": index,
        "name": f"step {index}",
        "command": ["make", "build"],
        "status": StepStatus.SUCCEEDED,
        "exit_code": 0,
        "start_date": NOW,
        "completion_date": NOW + timedelta(seconds=3),
        "log_size": 10,
        "timeout": None,
    }
    return RunStep(**(values | changes))


def run(**changes: Any) -> Run:
    values: dict[str, Any] = {
        "identifier": "0f0e0d0c-0b0a-4908-8706-050403020100",
        "project": "p",
        "job": "build",
        "parameters": {"branch": "main"},
        "source": {"type": "api", "user": "admin"},
        "worker": "w1",
        "status": RunStatus.SUCCEEDED,
        "workspace": "p/build",
        "start_date": NOW,
        "completion_date": NOW + timedelta(minutes=1),
        "should_cancel": False,
        "should_abort": False,
        "reason": None,
        "lease": None,
        "late_report": None,
        "event_sequence": 5,
        "log_size": 10,
        "timeout": None,
        "retry": None,
        "priority": 0,
        "expiry_date": None,
        "attempt": 1,
        "retry_of": None,
        "retried_by": None,
        "not_before": None,
        "secret_parameters": None,
        "warning": None,
        "forced_by": None,
        "sandbox": None,
        "limits": None,
        "creation_date": NOW - timedelta(seconds=1),
        "update_date": NOW + timedelta(minutes=1),
        "steps": [step(0)],
    }
    return Run(**(values | changes))


RUNS = [
    run(),
    run(status=RunStatus.PENDING, worker=None, start_date=None, completion_date=None,
        steps=[step(0, status=StepStatus.PENDING, exit_code=None, start_date=None,
                    completion_date=None, timeout=7)],
        waiting_reason="no connected worker matches", expiry_date=NOW, not_before=NOW),
    run(parameters={"token": "hunter2", "name": "été ✓ \"quoted\"\n"},
        secret_parameters=["token"]),
    run(status=RunStatus.FAILED, reason="step 1 failed", warning="careful", timeout=30,
        priority=-3, attempt=2, retry_of="00000000-0000-4000-8000-000000000000",
        retried_by="00000000-0000-4000-8000-000000000001",
        forced_by="admin", late_report="late", source={"type": "schedule", "nested": [1, 2.5]},
        steps=[step(0), step(1, status=StepStatus.FAILED, exit_code=2, timeout=1.5)]),
    run(steps=[], creation_date=NOW.replace(microsecond=0), timeout=0.1),
    run(sandbox={"network": False}, limits={"memory_mb": 512, "cpu_seconds": 60}),
    run(results={"package": "p-1.0.tar.gz", "url": "https://x/?a=1"}),
]  # fmt: skip


def run_out(shown: Run) -> RunOut:
    """The reference: the published model, built from the run, secret values masked."""
    model = RunOut.model_validate(shown)
    return model.model_copy(update={"parameters": shown.shown_parameters()})


@pytest.mark.parametrize("shown", RUNS)
def test_a_run_encodes_to_the_bytes_runout_makes(shown: Run) -> None:
    expected = TypeAdapter(RunOut).dump_json(run_out(shown))
    assert pydantic_core.to_json(run_fields(shown)) == expected


def test_a_page_encodes_to_the_bytes_the_page_model_makes() -> None:
    for cursor in (None, "abc"):
        model = Page[RunOut](
            items=[run_out(r) for r in RUNS], next_cursor=cursor, previous_cursor=cursor
        )
        expected = TypeAdapter(Page[RunOut]).dump_json(model)
        encoded = pydantic_core.to_json(
            {
                "items": [run_fields(r) for r in RUNS],
                "next_cursor": cursor,
                "previous_cursor": cursor,
            }
        )
        assert encoded == expected


def test_the_fields_follow_the_published_models() -> None:
    fields = run_fields(RUNS[3])
    assert list(fields) == list(RunOut.model_fields)
    assert list(fields["steps"][1]) == list(RunStepOut.model_fields)
