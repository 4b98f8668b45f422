"""Run and step statuses and the one state machine that moves them."""

from __future__ import annotations

from enum import StrEnum

from orchestra.errors import Conflict


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"
    EXCEPTION = "exception"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    EXCEPTION = "exception"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


FINAL_RUN_STATUSES = frozenset(s for s in RunStatus if s.is_final)
ACTIVE_RUN_STATUSES = frozenset((RunStatus.PENDING, RunStatus.RUNNING))

# pending -> running happens when a master assigns the run to a worker; running -> pending
# only when that assignment provably never reached the worker (the worker reconnected without
# it), so nothing ran and handing it out again cannot run it twice.
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.EXCEPTION}),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.PENDING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.ABORTED,
            RunStatus.EXCEPTION,
        }
    ),
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset(
        {StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.ABORTED, StepStatus.EXCEPTION}
    ),
    StepStatus.RUNNING: frozenset(
        {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.ABORTED, StepStatus.EXCEPTION}
    ),
}


def run_sources_for(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses from which a run may move to `target`."""
    return frozenset(src for src, targets in RUN_TRANSITIONS.items() if target in targets)


def step_sources_for(target: StepStatus) -> frozenset[StepStatus]:
    return frozenset(src for src, targets in STEP_TRANSITIONS.items() if target in targets)


def step_sources_reaching(target: StepStatus) -> frozenset[StepStatus]:
    """The statuses from which a step reaches `target` in one or more transitions: a worker's
    report may carry a step's start and end together, applied as one change of its row."""
    found: set[StepStatus] = set()
    frontier = {target}
    while frontier:
        sources = {s for t in frontier for s in step_sources_for(t)} - found
        found |= sources
        frontier = sources
    return frozenset(found)


def run_sources_within(
    target: RunStatus, only: frozenset[RunStatus] | None
) -> frozenset[RunStatus]:
    """The statuses from which a run may move to `target`, narrowed to `only` when given (a
    change that applies to fewer of them, such as forcing a running run): a source the table
    does not allow is a programming error."""
    allowed = run_sources_for(target)
    if only is None:
        return allowed
    if not only <= allowed:
        wrong = ", ".join(sorted(s.value for s in only - allowed))
        raise ValueError(f"a run cannot become {target.value} from {wrong}")
    return only


def check_run_transition(current: RunStatus, target: RunStatus) -> None:
    """Raise Conflict (409) unless a run may go from `current` to `target`."""
    if target not in RUN_TRANSITIONS.get(current, frozenset()):
        raise Conflict(f"a {current.value} run cannot become {target.value}")


def check_step_transition(current: StepStatus, target: StepStatus) -> None:
    if target not in STEP_TRANSITIONS.get(current, frozenset()):
        raise Conflict(f"a {current.value} step cannot become {target.value}")
