"""Workers' reports applied: each event exactly once, by sequence number, in groups.

The reports of different runs that arrive together share one transaction (a group commit,
services/group_commit.py); `report_plan.plan` checks each against its run's row and gathers its
changes, and `_write` writes a group's with one statement per kind of change. A report that
breaks the protocol is refused alone, before anything of it is written. Where storage has the
one-statement form (PostgreSQL), a report whose run is as its worker left it is applied by that
statement without reading the row first (storage/reports.py).

Output of a run that has secret values is masked here too, before it is stored, whether or not
its worker masked it (services/run_secrets.py keeps the values: a run without any costs a
look-up per report with output, no query and no pass over the data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra import metrics
from orchestra.clock import Clock
from orchestra.domain.masking import mask
from orchestra.domain.models import Row
from orchestra.domain.statuses import StepStatus
from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m
from orchestra.services import pipeline_marks
from orchestra.services.events import Events
from orchestra.services.group_commit import GroupCommit, Waiting
from orchestra.services.report_plan import (
    FROM_PENDING,
    ReportResult,
    ReportWrites,
    as_left,
    last_step_covered,
    plan,
)
from orchestra.services.run_endings import RunEndings
from orchestra.services.run_secrets import RunSecrets
from orchestra.storage import event_log, running
from orchestra.storage import reports as report_storage
from orchestra.storage import runs as run_storage
from orchestra.storage.engine import Database

log = logging.getLogger(__name__)
REPORT_GROUP_MAX = 32  # reports applied in one transaction at most
# A report carrying more output than this is applied in a transaction of its own: a group's
# transaction stays short (it holds SQLite's write lock), and megabytes gain nothing by company.
REPORT_GROUP_BYTES = 64 << 10


class ReportApplier:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        endings: RunEndings,
        run_secrets: RunSecrets | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.endings = endings
        self.run_secrets = run_secrets
        # Reports from every worker connected here, committed in groups; one run's reports
        # never share a group (they are applied in order).
        self._reports: GroupCommit[tuple[str, m.Report], ReportResult] = GroupCommit(
            self._commit_reports,
            group_max=REPORT_GROUP_MAX,
            what="reports",
            key=lambda item: item[1].run,
        )

    async def report(self, worker: str, report: m.Report) -> ReportResult:
        """Apply a worker's report, in a transaction shared with the reports of other runs
        arriving meanwhile (see `apply_reports`); a ProtocolError if it breaks the protocol."""
        started = time.perf_counter()
        try:
            output = sum(len(e.data) for e in report.events if isinstance(e, m.StepOutput))
            if output > REPORT_GROUP_BYTES:
                return await self.apply_report(worker, report)
            return await self._reports.submit((worker, report))
        finally:
            metrics.REPORT_SECONDS.observe(time.perf_counter() - started)

    async def _commit_reports(
        self, group: list[Waiting[tuple[str, m.Report], ReportResult]]
    ) -> None:
        outcomes = await self.apply_reports([waiting.item for waiting in group])
        for waiting, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, ProtocolError):
                waiting.fail(outcome)
            else:
                waiting.answer_with(outcome)

    async def apply_report(self, worker: str, report: m.Report) -> ReportResult:
        """Apply one worker's events for one run (see `apply_reports`)."""
        (outcome,) = await self.apply_reports([(worker, report)])
        if isinstance(outcome, ProtocolError):
            raise outcome
        return outcome

    async def apply_reports(
        self, reports: Sequence[tuple[str, m.Report]]
    ) -> list[ReportResult | ProtocolError]:
        """Apply workers' reports, for different runs, in one transaction; each event exactly
        once. The runs' rows are read (and locked) by one statement. A report that breaks the
        protocol (a run not its worker's, a gap in the sequence, output at the wrong offset) is
        refused alone, before anything of it is written. What the others change goes together:
        one statement per kind of change, with a row of parameters per run or step."""
        if len({report.run for _, report in reports}) != len(reports):
            raise ValueError("one report per run in a group")  # services/group_commit.py's key
        done: dict[int, ReportResult] = {}
        if self.db.one_statement_paths:
            done = await self._apply_in_one_statement(reports)
        rest = [(worker, report) for i, (worker, report) in enumerate(reports) if i not in done]
        applied = iter(await self._apply_in_transaction(rest) if rest else [])
        outcomes = [done[i] if i in done else next(applied) for i in range(len(reports))]
        for (_, report), outcome in zip(reports, outcomes, strict=True):
            if not isinstance(outcome, ProtocolError):
                self.events.publish(f"run:{report.run}")
                if outcome.finished and self.run_secrets is not None:
                    self.run_secrets.forget(report.run)
        return outcomes

    async def _apply_in_transaction(
        self, reports: Sequence[tuple[str, m.Report]]
    ) -> list[ReportResult | ProtocolError]:
        writes = ReportWrites()
        outcomes: list[ReportResult | ProtocolError] = []
        ended: list[tuple[Row, dict[str, Any]]] = []  # runs ended: their rows and changes
        masks = await self._masks_of(reports)  # read before the transaction, if at all
        async with self.db.transaction() as conn:
            rows = await run_storage.lock_runs(conn, [report.run for _, report in reports])
            # A run's end is checked against its steps: theirs are read for the runs ending,
            # unless the report changes every one of them (a short run's whole life in one).
            ending = [r.run for _, r in reports if _needs_steps(r, rows.get(r.run))]
            steps = await run_storage.steps_of(conn, ending) if ending else {}
            for worker, report in reports:
                planned = ReportWrites()
                statuses = {s.index: s.status.value for s in steps.get(report.run, ())}
                try:
                    outcomes.append(plan(rows.get(report.run), worker, report, planned, statuses))
                except ProtocolError as refused:
                    outcomes.append(refused)
                    continue
                if report.run in masks:
                    _mask_output(planned, masks[report.run])
                if isinstance(outcomes[-1], ReportResult) and outcomes[-1].finished:
                    ended += _ending(rows[report.run], planned)
                writes.merge(planned)
            await self._write(conn, writes)
            await event_log.append(conn, _changes(reports, outcomes, rows, writes))
            # Only runs of pipelines mark anything: the others cost no statement.
            finished = [
                report.run
                for (_, report), outcome in zip(reports, outcomes, strict=True)
                if isinstance(outcome, ReportResult)
                and outcome.finished
                and rows[report.run].get("pipeline_run") is not None
            ]
            marked = await pipeline_marks.runs_ended(conn, finished, self.clock.now())
        if marked:  # after the commit: the pipelines loop finds the marks
            pipeline_marks.advance_soon(self.events)
        for row, change in ended:  # committed
            start = change.get("start_date") or row["start_date"]
            end = change.get("completion_date")
            metrics.run_ended(row["project"], row["job"], change["status"], start, end)
        return outcomes

    async def _masks_of(
        self, reports: Sequence[tuple[str, m.Report]]
    ) -> dict[str, tuple[bytes, ...]]:
        """The values to mask in these reports' output, for the runs that have some."""
        if self.run_secrets is None:
            return {}
        with_output = [
            report.run
            for _, report in reports
            if any(isinstance(e, m.StepOutput) for e in report.events)
        ]
        return await self.run_secrets.masks_of(with_output) if with_output else {}

    async def _apply_in_one_statement(
        self, reports: Sequence[tuple[str, m.Report]]
    ) -> dict[int, ReportResult]:
        """PostgreSQL: the reports that find their run as their worker left it (running there,
        at the event before their first), applied by one statement without reading the rows
        first (storage/reports.py); by position in `reports`. Reports with output, and those
        whose run is not as expected, are left to the transaction."""
        planned: list[tuple[int, ReportResult, str, int, ReportWrites, int | None]] = []
        for position, (worker, report) in enumerate(reports):
            # Reports with output go to the transaction, and so do those ending their run
            # without carrying every step's change (the end is checked against the steps,
            # which this statement does not read; it checks there is no step after them).
            if not report.events or any(isinstance(e, m.StepOutput) for e in report.events):
                continue
            expected = report.events[0].sequence - 1
            last_step = None
            if any(isinstance(e, m.RunEnded) for e in report.events):
                last_step = last_step_covered(report, expected)
                if last_step is None:
                    continue
            writes = ReportWrites()
            try:
                result = plan(as_left(worker, expected), worker, report, writes, {})
            except ProtocolError:
                continue  # the transaction refuses it, with the run's actual state
            planned.append((position, result, worker, expected, writes, last_step))
        if not planned:
            return {}
        runs: list[report_storage.RunChange] = []
        steps: list[report_storage.StepChange] = []
        skipped: list[str] = []
        for _, _, worker, expected, writes, last_step in planned:
            (changes,) = (c for group in writes.runs.values() for c in group)
            runs.append(
                report_storage.RunChange(
                    identifier=changes["identifier"],
                    worker=worker,
                    expected=expected,
                    last_sequence=changes["event_sequence"],
                    started=changes.get("start_date"),
                    status=changes.get("status"),
                    completion_date=changes.get("completion_date"),
                    reason=changes.get("reason"),
                    results=changes.get("results"),
                    last_step=last_step,
                )
            )
            for (guard, _), rows in writes.steps.items():
                for row in rows:
                    steps.append(
                        report_storage.StepChange(
                            run=row["run"],
                            index=row["index"],
                            status=row["status"],
                            start_date=row.get("start_date"),
                            exit_code=row.get("exit_code"),
                            completion_date=row.get("completion_date"),
                            from_pending=guard == FROM_PENDING,
                        )
                    )
            skipped += writes.skip_pending
        async with self.db.autocommit() as conn:
            applied = await report_storage.apply(conn, runs, steps, skipped, self.clock.now())
        for change in runs:  # committed
            if change.status is not None and change.identifier in applied:
                run = applied[change.identifier]
                start, end = change.started or run.start_date, change.completion_date
                metrics.run_ended(run.project, run.job, change.status, start, end)
        return {
            position: result
            for position, result, _, _, _, _ in planned
            if reports[position][1].run in applied
        }

    async def _write(self, conn: AsyncConnection, writes: ReportWrites) -> None:
        now = self.clock.now()
        for run_id, step, offset, data, date in writes.output:
            await run_storage.append_log(conn, run_id, step, offset, data, date or now)
            await running.add_to_step_log(conn, run_id, step, len(data))
        for (guard, _columns), steps in writes.steps.items():
            await running.update_steps(conn, steps, guard)
        # After the steps' own ends: a step that started in these reports is no longer pending.
        await run_storage.skip_pending_steps_of(conn, writes.skip_pending, StepStatus.SKIPPED)
        for changes in writes.runs.values():
            for change in changes:
                change["update_date"] = now
            await running.update_runs(conn, changes)
        for row, worker, report in writes.late:
            await self._record_late(conn, row, worker, report)
        for run_id in writes.retried:
            await self.endings.after_final(conn, run_id)

    async def _record_late(
        self, conn: AsyncConnection, row: Row, worker: str, report: m.Report
    ) -> None:
        ended = [e for e in report.events if isinstance(e, m.RunEnded)]
        if not ended:
            return
        note = (
            f"worker {worker} reported {ended[-1].status} at {ended[-1].date.isoformat()} "
            f"after the run had ended {row['status']}; refused"
        )
        await running.note_late_report(conn, row["identifier"], note)
        log.warning("run %s: %s", row["identifier"], note)


def _changes(
    reports: Sequence[tuple[str, m.Report]],
    outcomes: Sequence[ReportResult | ProtocolError],
    rows: dict[str, dict[str, Any]],
    writes: ReportWrites,
) -> list[event_log.Change]:
    """The change log's rows for the reports applied that did more than add output (that is
    not an event of the stream: the log is followed on its own)."""
    status: dict[str, str] = {}
    for changes in writes.runs.values():
        for change in changes:
            if change.get("status"):
                status[change["identifier"]] = change["status"]
    return [
        event_log.Change(
            event_log.RUN_UPDATED,
            rows[report.run]["project"],
            report.run,
            status.get(report.run, rows[report.run]["status"]),
        )
        for (_, report), outcome in zip(reports, outcomes, strict=True)
        if isinstance(outcome, ReportResult)
        and any(not isinstance(e, m.StepOutput) for e in report.events)
    ]


def _needs_steps(report: m.Report, row: Row | None) -> bool:
    """Whether a report ends its run and its end must be checked against steps' statuses
    that the report itself does not carry (read from the database, then)."""
    if row is None or not any(isinstance(e, m.RunEnded) for e in report.events):
        return False
    last = row["last_step"]
    return last is None or last_step_covered(report, int(row["event_sequence"])) != last


def _ending(row: Row, planned: ReportWrites) -> list[tuple[Row, dict[str, Any]]]:
    """The run's row and the change that ends it, among a report's planned changes."""
    changes = [c for group in planned.runs.values() for c in group if c.get("status")]
    return [(row, changes[-1])] if changes else []


def _mask_output(writes: ReportWrites, masks: tuple[bytes, ...]) -> None:
    """A run's output in `writes` with its secret values masked (the same length each)."""
    writes.output = [
        (run_id, step, offset, mask(data, masks), date)
        for run_id, step, offset, data, date in writes.output
    ]
