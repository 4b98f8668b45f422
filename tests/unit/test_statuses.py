"""orchestra.domain.statuses: the run and step state machine."""

from __future__ import annotations

import pytest

from orchestra.domain.statuses import (
    RunStatus,
    StepStatus,
    check_run_transition,
    check_step_transition,
    run_sources_for,
)
from orchestra.errors import Conflict


def test_statuses_have_the_contract_values() -> None:
    assert {s.value for s in RunStatus} == {
        "pending",
        "running",
        "succeeded",
        "failed",
        "aborted",
        "cancelled",
        "exception",
    }
    assert {s.value for s in StepStatus} == {
        "pending",
        "running",
        "succeeded",
        "failed",
        "aborted",
        "exception",
        "skipped",
    }


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (RunStatus.PENDING, RunStatus.RUNNING),
        (RunStatus.PENDING, RunStatus.CANCELLED),
        (RunStatus.RUNNING, RunStatus.SUCCEEDED),
        (RunStatus.RUNNING, RunStatus.FAILED),
        (RunStatus.RUNNING, RunStatus.ABORTED),
        (RunStatus.RUNNING, RunStatus.EXCEPTION),
    ],
)
def test_run_transition_allowed(current: RunStatus, target: RunStatus) -> None:
    check_run_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (RunStatus.PENDING, RunStatus.ABORTED),
        (RunStatus.PENDING, RunStatus.SUCCEEDED),
        (RunStatus.RUNNING, RunStatus.CANCELLED),
        (RunStatus.CANCELLED, RunStatus.PENDING),
        (RunStatus.SUCCEEDED, RunStatus.FAILED),
        (RunStatus.FAILED, RunStatus.RUNNING),
        (RunStatus.PENDING, RunStatus.PENDING),
    ],
)
def test_run_transition_illegal_is_a_conflict(current: RunStatus, target: RunStatus) -> None:
    with pytest.raises(Conflict):
        check_run_transition(current, target)


def test_run_final_statuses_have_no_way_out() -> None:
    for status in RunStatus:
        if status.is_final:
            for target in RunStatus:
                with pytest.raises(Conflict):
                    check_run_transition(status, target)
    assert run_sources_for(RunStatus.CANCELLED) == {RunStatus.PENDING}


def test_step_transitions() -> None:
    check_step_transition(StepStatus.PENDING, StepStatus.SKIPPED)
    check_step_transition(StepStatus.RUNNING, StepStatus.FAILED)
    with pytest.raises(Conflict):
        check_step_transition(StepStatus.SKIPPED, StepStatus.RUNNING)
    with pytest.raises(Conflict):
        check_step_transition(StepStatus.SUCCEEDED, StepStatus.FAILED)
