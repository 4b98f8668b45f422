"""Dispatch's rules: which pending runs go first, how concurrency caps hold, which worker
takes a run. No I/O: storage/dispatch.py reads and claims, services/dispatch.py runs a pass.

The order of pending runs: higher priority first; within a priority, projects take turns (a
project flooding the queue cannot starve the others: each project's oldest run, then each
one's second oldest...); within a project, oldest first. A run goes to the worker with the most
free executors among those whose properties match its job's (and, for a sandboxed run, that
say sandbox=true: domain/matching.py), the earlier-listed of equals.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestra.domain.matching import required_properties

DISPATCH_BATCH = 200  # pending runs read in one pass at most


@dataclass(frozen=True)
class Candidate:
    """A pending run that may be dispatched now, with what matching needs: `properties` are
    those a worker must hold to take it (its job's, and sandbox=true when it is sandboxed)."""

    identifier: str
    properties: dict[str, Any]
    project: str = ""
    job: str = ""
    capped: bool = False  # its job or project has a concurrency cap


@dataclass
class Caps:
    """Concurrency caps and the running runs that count against them."""

    job_cap: dict[tuple[str, str], int]
    project_cap: dict[str, int]
    job_running: dict[tuple[str, str], int]
    project_running: dict[str, int]

    @classmethod
    def none(cls) -> Caps:
        return cls({}, {}, {}, {})

    def copy(self) -> Caps:
        return Caps(
            self.job_cap, self.project_cap, dict(self.job_running), dict(self.project_running)
        )

    def take(self, project: str, job: str) -> bool:
        """Reserve a slot for a run of this job if neither cap is reached."""
        key = (project, job)
        if key in self.job_cap and self.job_running.get(key, 0) >= self.job_cap[key]:
            return False
        if project in self.project_cap and (
            self.project_running.get(project, 0) >= self.project_cap[project]
        ):
            return False
        self.job_running[key] = self.job_running.get(key, 0) + 1
        self.project_running[project] = self.project_running.get(project, 0) + 1
        return True


@dataclass(frozen=True)
class Level:
    """A project's pending runs of one priority, oldest first, as storage reads them: rows
    with `identifier`, `job`, `creation_date`, `properties` (the job's), `capped` and
    `sandbox` (the run's own)."""

    project: str
    priority: int
    rows: Iterable[Mapping[str, Any]]


def rank(levels: Iterable[Level], batch: int, caps: Caps) -> list[Candidate]:
    """The first `batch` candidates in dispatch order, leaving out those over a cap (`caps`
    counts the ones taken). At most `batch` are taken from a project, higher priorities first:
    `levels` come by project, each project's from its highest priority down."""
    ranked: list[tuple[int, int, datetime, Candidate]] = []
    # The properties a job's runs require, shared by its runs (sandboxed ones apart).
    jobs: dict[tuple[str, str, bool], dict[str, Any]] = {}
    taken: dict[str, int] = {}
    for level in levels:
        count = taken.get(level.project, 0)
        for position, row in enumerate(level.rows):
            if count >= batch:
                break
            job = row["job"]
            sandbox = row.get("sandbox")
            key = (level.project, job, sandbox is not None)
            properties = jobs.get(key)
            if properties is None:
                properties = jobs[key] = required_properties(row["properties"] or {}, sandbox)
            candidate = Candidate(
                row["identifier"], properties, level.project, job, bool(row["capped"])
            )
            ranked.append((-level.priority, position, row["creation_date"], candidate))
            count += 1
        taken[level.project] = count
    ranked.sort(key=lambda item: item[:3])
    chosen: list[Candidate] = []
    for *_, candidate in ranked:
        if caps.take(candidate.project, candidate.job):
            chosen.append(candidate)
        if len(chosen) >= batch:
            break
    return chosen


class _Freest:
    """Free executors by worker, the freest first and the earlier of equals, in a heap: each
    entry (-free executors, position, worker); an entry whose count is no longer the worker's
    is stale, dropped when it comes up (each change of a count pushes the new one)."""

    def __init__(self, free: dict[str, int]) -> None:
        self.free = free
        self.position = {worker: i for i, worker in enumerate(free)}
        self.heap = [(-n, self.position[w], w) for w, n in free.items() if n > 0]
        heapq.heapify(self.heap)

    def first(self) -> str | None:
        heap, free = self.heap, self.free
        while heap and -heap[0][0] != free[heap[0][2]]:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def take(self, worker: str) -> None:
        """One of `worker`'s free executors is taken."""
        left = self.free[worker] = self.free[worker] - 1
        if self.heap and self.heap[0][2] == worker and -self.heap[0][0] == left + 1:
            if left > 0:  # the first, taken: its entry replaced at once
                heapq.heapreplace(self.heap, (-left, self.position[worker], worker))
            else:
                heapq.heappop(self.heap)
        elif left > 0:
            heapq.heappush(self.heap, (-left, self.position[worker], worker))


def assign(
    candidates: Iterable[Candidate],
    free: dict[str, int],
    can_take: Callable[[str, dict[str, Any]], bool],
) -> dict[str, str]:
    """Run -> worker for the candidates some free worker can take, the freest first, the
    earlier of equals. `free` (free executors by worker) is decremented for each assignment.

    A run that requires no property can go to any worker (domain/matching.py): it takes the
    freest of all, in O(log workers). `can_take(worker, properties)` is asked only for runs
    that require some, which look at every free worker."""
    freest = _Freest(free)
    assignments: dict[str, str] = {}
    for candidate in candidates:
        chosen = None
        if candidate.properties:
            most = 0
            for worker, count in free.items():
                if count > most and can_take(worker, candidate.properties):
                    chosen, most = worker, count
        else:
            chosen = freest.first()
        if chosen is not None:
            assignments[candidate.identifier] = chosen
            freest.take(chosen)
    return assignments


def plain_order(free: Mapping[str, int], limit: int) -> list[str]:
    """The workers `assign` gives runs that require no property to, in order, one per free
    executor, `limit` at most: the k-th plain run goes to the k-th (storage's one-statement
    pass claims them so, without matching each)."""
    freest = _Freest(dict(free))
    order: list[str] = []
    while len(order) < limit and (worker := freest.first()) is not None:
        order.append(worker)
        freest.take(worker)
    return order
