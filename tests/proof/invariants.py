"""The invariant checker run at the end of every proof scenario.

A scenario records in a Ledger every run it triggered (those the API acknowledged with 201) and
what each run's job is expected to print. Every job of the suite appends `<ORCHESTRA_RUN> <pid>
<child pid>` to the ledger's journal file, in one O_APPEND write, when it starts, and prints
`line 1` .. `line N`. `Ledger.verify` then checks, through the API:

1. every run reaches a final status by the deadline;
2. no run is lost: every acknowledged run exists (and a run the scenario did not trigger, such as
   a schedule's, is counted, never ignored);
3. nothing runs twice, so no two attempts of one run are ever alive at once: no identifier appears
   twice in the journal (a retry is a new run with an identifier of its own, so even a retry policy
   never repeats one), a cancelled run never appears, and a run whose job ran to its end
   (`succeeded` or `failed`) appears exactly once;
4. no line is lost or repeated: the stored log holds `line 1` .. `line k` in order, each once, with
   k = N for a succeeded run.

Violations are collected and reported together, with the run identifiers concerned.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.api import FINAL_STATUSES, Api

NUMBERED = re.compile(rb"^line (\d+)(?: .*)?$")  # `line N`, maybe padded after a space
RAN_TO_THE_END = frozenset({"succeeded", "failed"})


@dataclass(frozen=True)
class Expect:
    """What a run's job does when it runs to its end."""

    lines: int  # numbered lines printed
    journaled: bool = True  # the job appends its identifier to the journal when it starts
    statuses: frozenset[str] | None = None  # the final statuses allowed (None: any)


@dataclass
class Report:
    runs: dict[str, dict[str, Any]]
    statuses: collections.Counter[str]
    starts: collections.Counter[str]
    logs_checked: int
    violations: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    journal: Path
    triggered: dict[str, Expect] = field(default_factory=dict)
    verified: bool = False

    # Recording.

    def add(self, run: Mapping[str, Any] | str, expect: Expect) -> str:
        identifier = run if isinstance(run, str) else str(run["identifier"])
        self.triggered[identifier] = expect
        return identifier

    def trigger(
        self,
        api: Api,
        job: str,
        expect: Expect,
        project: str = "p",
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        run = api.trigger(job, project, parameters)
        self.add(run, expect)
        return run

    # The journal the jobs write.

    def entries(self) -> list[tuple[str, int, int]]:
        """(run, pid, child pid) of every job start, in order."""
        if not self.journal.exists():
            return []
        found = []
        for line in self.journal.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                found.append((parts[0], int(parts[1]), int(parts[2])))
            elif parts:
                found.append((parts[0], 0, 0))
        return found

    def starts(self) -> collections.Counter[str]:
        return collections.Counter(run for run, _, _ in self.entries())

    def pids(self) -> dict[str, tuple[int, int]]:
        return {run: (pid, child) for run, pid, child in self.entries()}

    # Checking.

    def verify(
        self,
        api: Api,
        deadline: float,
        project: str = "p",
        *,
        log_sample: int | None = None,
        untracked_ok: bool = False,
    ) -> Report:
        """Check the four invariants; fail with every violation found. `deadline` is the number
        of seconds from now by which every run must be final. `log_sample` checks the logs of
        that many runs (spread over all of them) instead of every one."""
        self.verified = True
        runs = wait_for_final(api, self.triggered, deadline, project)
        starts = self.starts()
        violations: list[str] = []

        # 1. Final by the deadline.
        for run, expect in self.triggered.items():
            current = runs.get(run)
            if current is None:
                continue
            if current["status"] not in FINAL_STATUSES:
                violations.append(f"run {run} still {current['status']} after {deadline:g}s")
            elif expect.statuses is not None and current["status"] not in expect.statuses:
                violations.append(
                    f"run {run} ended {current['status']} (reason {current.get('reason')!r}), "
                    f"expected one of {sorted(expect.statuses)}"
                )

        # 2. Nothing lost.
        for run in self.triggered:
            if run not in runs:
                violations.append(f"run {run} was acknowledged (201) but no longer exists")
        untracked = sorted(set(runs) - set(self.triggered))
        if untracked and not untracked_ok:
            violations.append(f"{len(untracked)} runs nobody triggered: {untracked[:5]}")

        # 3. Nothing ran twice; a cancelled run never started; a finished run started once.
        for run, count in starts.items():
            if count > 1:
                violations.append(f"run {run} started {count} times (journal)")
        for run, current in runs.items():
            expect = self.triggered.get(run)
            if current["status"] == "cancelled" and starts[run]:
                violations.append(f"run {run} is cancelled but its job started")
            if (
                expect is not None
                and expect.journaled
                and current["status"] in RAN_TO_THE_END
                and starts[run] != 1
            ):
                violations.append(
                    f"run {run} ended {current['status']} but its job started {starts[run]} times"
                )

        # 4. Every line once, in order.
        checked = 0
        for run in _spread(sorted(self.triggered), log_sample):
            current = runs.get(run)
            if current is None:
                continue
            problem = log_problem(api.log(run, project), self.triggered[run], current["status"])
            checked += 1
            if problem:
                violations.append(f"run {run} ({current['status']}): {problem}")

        statuses = collections.Counter(r["status"] for r in runs.values())
        report = Report(runs, statuses, starts, checked, violations)
        assert not violations, (
            f"{len(violations)} invariant violations (statuses {dict(statuses)}):\n"
            + "\n".join(violations[:40])
        )
        return report


def log_problem(log: bytes, expect: Expect, status: str) -> str | None:
    """What is wrong with a stored log of the proof job, or None."""
    numbers = [int(m.group(1)) for line in log.split(b"\n") if (m := NUMBERED.match(line))]
    if numbers != list(range(1, len(numbers) + 1)):
        shown = numbers if len(numbers) < 20 else [*numbers[:10], "...", *numbers[-10:]]
        return f"lines out of order, repeated or missing: {shown}"
    if status == "succeeded" and len(numbers) != expect.lines:
        return f"succeeded with {len(numbers)} of {expect.lines} lines"
    if len(numbers) > expect.lines:
        return f"{len(numbers)} lines, more than the {expect.lines} printed"
    return None


def all_runs(api: Api, project: str = "p", **filters: str) -> dict[str, dict[str, Any]]:
    """Every run of a project, through every page of the listing, by identifier."""
    return {run["identifier"]: run for run in api.runs(project, **filters)}


def wait_for_final(
    api: Api, runs: Iterable[str], timeout: float, project: str = "p"
) -> dict[str, dict[str, Any]]:
    """Poll until every one of `runs` is final (or the timeout passes); all the project's runs."""
    wanted = set(runs)
    deadline = time.monotonic() + timeout
    while True:
        current = all_runs(api, project)
        open_runs = [
            r for r in wanted if r in current and current[r]["status"] not in FINAL_STATUSES
        ]
        if not open_runs or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def _spread(items: list[str], count: int | None) -> list[str]:
    if count is None or len(items) <= count:
        return items
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]
