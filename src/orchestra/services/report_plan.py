"""What a worker's report changes, worked out before anything is written: pure, no I/O.

`plan` checks a report against its run's row (the run must be running on this worker, its
events must follow the last one applied, output must continue the log) and gathers the changes
into `ReportWrites`, by kind, so that a group of reports is written with one statement per kind
(services/report_applier.py). A run's end is one of the protocol's end statuses, each of which
the transition table of domain/statuses.py allows from running; a step's change is guarded by
the statuses that reach its target in that table. A run's end is also checked against its
steps (`end_conflict`): one that they contradict is recorded as `exception`, with the reason.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestra.domain.controls import retry_from_row
from orchestra.domain.models import Row
from orchestra.domain.results import MAX_RESULTS_BYTES, merge_results, results_size
from orchestra.domain.statuses import (
    RunStatus,
    StepStatus,
    step_sources_reaching,
)
from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m


@dataclass(frozen=True)
class ReportResult:
    acknowledged: int
    discard_reason: str | None = None
    finished: bool = False


# A guard on a step's row: the column and the statuses it may be in for the change to apply.
Guard = tuple[str, tuple[str, ...]]


@functools.cache
def step_guard(target: StepStatus) -> Guard:
    """A step's row may move to `target` from any status that reaches it in the transition
    table (a start and an end in one report are one change of the row)."""
    return ("status", tuple(sorted(s.value for s in step_sources_reaching(target))))


FROM_PENDING: Guard = step_guard(StepStatus.RUNNING)  # a start alone


class ReportWrites:
    """What a group of reports changes, gathered before anything is written."""

    def __init__(self) -> None:
        # run, step, offset, data, and when the worker read it (None from older workers)
        self.output: list[tuple[str, int, int, bytes, datetime | None]] = []
        # Step rows to update, by guard (the statuses they may be in) and columns: a row of
        # parameters each.
        self.steps: dict[tuple[Guard, tuple[str, ...]], list[dict[str, Any]]] = {}
        self.skip_pending: list[str] = []  # runs that ended with steps never started
        self.runs: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # by the columns changed
        self.late: list[tuple[Row, str, m.Report]] = []  # reports for runs given up on
        self.retried: list[str] = []  # finished runs with a retry policy

    def merge(self, other: ReportWrites) -> None:
        self.output += other.output
        for shape, steps in other.steps.items():
            self.steps.setdefault(shape, []).extend(steps)
        self.skip_pending += other.skip_pending
        for columns, changes in other.runs.items():
            self.runs.setdefault(columns, []).extend(changes)
        self.late += other.late
        self.retried += other.retried


def as_left(worker: str, sequence: int) -> Row:
    """A run's row as a worker left it, for `plan`: running there, at event `sequence` (the
    statement applying the plan holds it to that). Its results are not known: the plan's
    `results` are then the report's alone, which that statement merges into the run's."""
    return {
        "worker": worker,
        "status": RunStatus.RUNNING.value,
        "event_sequence": sequence,
        "log_size": 0,
        "start_date": None,
        "retry": None,
    }


def end_conflict(status: str, steps: Mapping[int, str], reason: str | None = None) -> str | None:
    """Why a run cannot have ended `status` with its steps in these statuses (by index), or
    None: `succeeded` needs every step succeeded or skipped, `failed` a failed step or a
    `reason` (its artifacts were refused: worker/artifact_phase.py). (A run may end `aborted`
    or `exception` whatever its steps: before its first, or when the worker itself failed.)"""
    if status == RunStatus.SUCCEEDED.value:
        for index in sorted(steps):
            if steps[index] not in (StepStatus.SUCCEEDED.value, StepStatus.SKIPPED.value):
                return (
                    f"the worker reported the run succeeded while step {index} was "
                    f"{steps[index]}; recorded as exception"
                )
    elif status == RunStatus.FAILED.value and not reason:
        if StepStatus.FAILED.value not in steps.values():
            return "the worker reported the run failed with no failed step; recorded as exception"
    return None


def last_step_covered(report: m.Report, after: int) -> int | None:
    """The index of the last step when this report's events after sequence `after` change
    every step from the first to it (so a run's end in it can be checked against them alone,
    whatever the steps were before), else None. Whether that is the run's last step is for
    the caller to know."""
    indexes = {
        e.step
        for e in report.events
        if isinstance(e, m.StepStarted | m.StepEnded) and e.sequence > after
    }
    if not indexes or len(indexes) != max(indexes) + 1:
        return None
    return max(indexes)


def plan(
    row: Row | None,
    worker: str,
    report: m.Report,
    writes: ReportWrites,
    step_statuses: Mapping[int, str] | None = None,
) -> ReportResult:
    """Check a report against its run's row and gather what its new events change into
    `writes`, or raise ProtocolError if it breaks the protocol (`writes` is then to be
    dropped). A step's start and end in one report make one update of its row, and the run's
    own columns one update at the end. `step_statuses`: the run's steps' statuses by index
    before the report, needed when it ends the run (its end is checked against them, and a
    step still running at a run's end that is not success ends `exception`)."""
    if row is None or row["worker"] != worker:
        raise ProtocolError(f"run {report.run} is not assigned to this worker")
    if row["status"] != RunStatus.RUNNING.value:
        writes.late.append((row, worker, report))
        return ReportResult(row["event_sequence"], "the master gave up on this run")
    sequence = int(row["event_sequence"])
    log_size = int(row["log_size"])
    changes: dict[str, Any] = {}
    steps: dict[int, dict[str, Any]] = {}  # step -> the columns its events set
    finished = False
    ended_at: datetime | None = None
    results: dict[str, str] | None = None  # the report's steps' results, merged in order
    for event in report.events:
        if event.sequence <= sequence:
            continue  # sent again (its acknowledgement was lost): applied already
        if event.sequence != sequence + 1:
            raise ProtocolError(
                f"run {report.run}: event {event.sequence} after {sequence} (a gap)"
            )
        sequence = event.sequence
        if isinstance(event, m.StepOutput):
            data = event.data  # bytes from a binary frame; base64 from a text one
            if isinstance(data, str):
                try:
                    data = base64.b64decode(data, validate=True)
                except binascii.Error:
                    raise ProtocolError("output data is not base64") from None
            if event.offset != log_size:
                raise ProtocolError(
                    f"run {report.run}: output at {event.offset}, expected {log_size}"
                )
            writes.output.append((report.run, event.step, event.offset, data, event.date))
            log_size += len(data)
        elif isinstance(event, m.StepStarted):
            steps[event.step] = {"status": StepStatus.RUNNING.value, "start_date": event.date}
            if row["start_date"] is None and "start_date" not in changes:
                changes["start_date"] = event.date
        elif isinstance(event, m.StepEnded):
            steps.setdefault(event.step, {}).update(
                status=event.status, exit_code=event.exit_code, completion_date=event.date
            )
            if event.results:
                results = merge_results(results, event.results)
        elif isinstance(event, m.RunEnded) and not finished:
            finished = True
            changes.update(
                status=RunStatus(event.status).value,
                completion_date=event.date,
                reason=event.reason,
            )
            ended_at = event.date
    if finished:
        if step_statuses is None:
            raise ValueError("a report that ends its run is planned with its steps' statuses")
        _check_end(report.run, changes, steps, step_statuses, ended_at, writes)
    for index, columns in steps.items():
        guard = step_guard(StepStatus(columns["status"]))
        shape = (guard, tuple(columns))
        writes.steps.setdefault(shape, []).append({"run": report.run, "index": index, **columns})
    if results is not None:
        changes["results"] = _with_results(report.run, row.get("results"), results)
    changes.update(identifier=report.run, event_sequence=sequence, log_size=log_size)
    writes.runs.setdefault(tuple(changes), []).append(changes)
    if finished and retry_from_row(row["retry"]) is not None:
        writes.retried.append(report.run)
    return ReportResult(sequence, finished=finished)


def _with_results(run: str, stored: object, new: dict[str, str]) -> dict[str, str]:
    """The run's results with a report's merged in: a ProtocolError past the run's limit
    (the worker bounds them before it sends them)."""
    merged = merge_results(stored if isinstance(stored, dict) else None, new) or {}
    if results_size(merged) > MAX_RESULTS_BYTES:
        raise ProtocolError(f"run {run}: results over the run's limit of {MAX_RESULTS_BYTES} bytes")
    return merged


def _check_end(
    run: str,
    changes: dict[str, Any],
    steps: dict[int, dict[str, Any]],
    before: Mapping[int, str],
    ended_at: datetime | None,
    writes: ReportWrites,
) -> None:
    """The run's end in `changes` checked against its steps as the report leaves them: one
    they contradict becomes `exception` with the reason. A run that did not succeed has its
    pending steps skipped, and a step still running ends `exception` with it."""
    after = dict(before)
    after.update((index, columns["status"]) for index, columns in steps.items())
    conflict = end_conflict(changes["status"], after, changes.get("reason"))
    if conflict is not None:
        changes.update(status=RunStatus.EXCEPTION.value, reason=conflict)
    if changes["status"] == RunStatus.SUCCEEDED.value:
        return
    writes.skip_pending.append(run)
    for index, status in after.items():
        if status == StepStatus.RUNNING.value:
            steps.setdefault(index, {}).update(
                status=StepStatus.EXCEPTION.value, completion_date=ended_at
            )
