"""The Prometheus metrics of a server process (`GET /metrics`; docs/metrics.md lists them).

Two kinds: what this process did (counters and histograms, observed where it happens: a run
ended by a report applied here, a dispatch pass run here), and the state of the whole
instance (gauges: pending runs, workers, busy executors), which any server reads from the
database when it is scraped (services/metrics_gauges.py). Only prometheus_client here, so
that any layer may observe: an observation is a lock and an addition, about a microsecond.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Seconds, from a few milliseconds to a day: run and queue durations.
LONG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 86400)
# Seconds, from 100 microseconds to 10 seconds: a pass, a report, a transaction.
SHORT_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    10,
)

RUNS_FINISHED = Counter(
    "orchestra_runs_finished",
    "Runs that reached a final status in this process, by project, job and status",
    ["project", "job", "status"],
)
RUNS_EXPIRED = Counter(
    "orchestra_runs_expired",
    "Runs cancelled by this process because they were pending past their expiry",
)
RUN_DURATION = Histogram(
    "orchestra_run_duration_seconds",
    "From a run's start on a worker to its end, for runs that ended in this process",
    ["project"],
    buckets=LONG_BUCKETS,
)
RUN_QUEUE = Histogram(
    "orchestra_run_queue_seconds",
    "From a run's creation to its dispatch to a worker (by this process's dispatcher)",
    ["project"],
    buckets=LONG_BUCKETS,
)
DISPATCH_SECONDS = Histogram(
    "orchestra_dispatch_pass_seconds",
    "One dispatch pass: reading pending runs, matching, claiming, sending the assignments",
    buckets=SHORT_BUCKETS,
)
REPORT_SECONDS = Histogram(
    "orchestra_report_seconds",
    "Applying one worker report, from its arrival to its commit (group commits included)",
    buckets=SHORT_BUCKETS,
)
TRANSACTION_SECONDS = Histogram(
    "orchestra_database_transaction_seconds",
    "A write transaction, from asking for it (SQLite: waiting for the writer's turn) to its "
    "commit or rollback",
    buckets=SHORT_BUCKETS,
)
RUNS_PENDING = Gauge(
    "orchestra_runs_pending", "Pending runs, by project (from the database)", ["project"]
)
OLDEST_PENDING = Gauge(
    "orchestra_oldest_pending_run_age_seconds",
    "Age of the oldest pending run, 0 when none (from the database)",
)
RUNS_RUNNING = Gauge(
    "orchestra_executors_busy", "Runs running on workers: busy executors (from the database)"
)
EXECUTORS = Gauge(
    "orchestra_executors", "Executors of the connected, enabled workers (from the database)"
)
WORKERS_CONNECTED = Gauge(
    "orchestra_workers_connected", "Workers connected to a master (from the database)"
)


# The labelled series already made, by their labels: a dict look-up instead of `labels()`
# (its lock and checks), on the paths of every run. Bounded by the projects and jobs there are.
_finished: dict[tuple[str, str, str], Any] = {}
_durations: dict[str, Any] = {}
_queues: dict[str, Any] = {}


def run_ended(
    project: str, job: str, status: str, start: datetime | None, end: datetime | None
) -> None:
    """Count a run that ended, and observe how long it ran (if it started)."""
    key = (project, job, status)
    counter = _finished.get(key)
    if counter is None:
        counter = _finished[key] = RUNS_FINISHED.labels(project, job, status)
    counter.inc()
    if isinstance(start, datetime) and isinstance(end, datetime):
        duration = _durations.get(project)
        if duration is None:
            duration = _durations[project] = RUN_DURATION.labels(project)
        duration.observe(_seconds(start, end))


def run_started(project: str, created: datetime, now: datetime) -> None:
    """Observe how long a run waited before a worker was given it."""
    queue = _queues.get(project)
    if queue is None:
        queue = _queues[project] = RUN_QUEUE.labels(project)
    queue.observe(_seconds(created, now))


def _seconds(start: datetime, end: datetime) -> float:
    """`end - start` in seconds, never negative; a date without a time zone is UTC."""
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())
