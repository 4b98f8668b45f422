"""Job controls: timeouts, retries, concurrency caps, priorities, queue expiry, retention, and
isolation (a sandbox, limits).

All optional, with defaults that keep the plain behaviour: no timeout, no retry, no cap,
priority 0, the instance's pending expiry, the instance's retention (none unless set), no
sandbox and no limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchestra.errors import InvalidInput

RETRYABLE = ("exception", "failed")
MAX_RETRIES = 100
MAX_PRIORITY = 1_000_000
MAX_SECONDS = 366 * 86400.0
MAX_RETENTION_DAYS = 36_600.0
MAX_RETENTION_RUNS = 1_000_000


def amount(
    raw: object, what: str, unit: str, maximum: tuple[float, str], *, allow_zero: bool = False
) -> float | None:
    """A positive number (or 0, when allowed) of `unit`, at most `maximum` (its value and how
    to say it), or None."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidInput(f"{what} must be a number of {unit}")
    if raw < 0 or (raw == 0 and not allow_zero) or not raw <= maximum[0]:
        low = "at least 0" if allow_zero else "positive"
        raise InvalidInput(f"{what} must be {low} and at most {maximum[1]}")
    return float(raw)


def seconds(raw: object, what: str, *, allow_zero: bool = False) -> float | None:
    """A positive number of seconds (at most a year), or None."""
    return amount(raw, what, "seconds", (MAX_SECONDS, "a year"), allow_zero=allow_zero)


def whole(raw: object, what: str, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise InvalidInput(f"{what} must be a whole number from {low} to {high}")
    return raw


def priority(raw: object, what: str = "priority") -> int:
    value = whole(raw, what, -MAX_PRIORITY, MAX_PRIORITY)
    return 0 if value is None else value


@dataclass(frozen=True)
class Retry:
    count: int
    delay: float
    on: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "delay": self.delay, "on": list(self.on)}

    def delay_before(self, attempt: int) -> timedelta:
        """The wait before attempt number `attempt` (2 for the first retry): exponential."""
        return timedelta(seconds=min(self.delay * 2 ** max(0, attempt - 2), MAX_SECONDS))

    def applies(self, status: str, attempt: int) -> bool:
        return status in self.on and attempt <= self.count


def parse_retry(raw: object) -> Retry | None:
    """{"count": N, "delay": seconds, "on": ["exception", "failed"]}; `on` defaults to
    exception only (the system failed, not the job)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput('retry must be a mapping such as {"count": 2, "delay": 10}')
    unknown = sorted(str(k) for k in raw if k not in ("count", "delay", "on"))
    if unknown:
        raise InvalidInput(f"retry: unknown fields {', '.join(unknown)}")
    count = whole(raw.get("count"), "retry.count", 1, MAX_RETRIES)
    if count is None:
        raise InvalidInput("retry.count is required")
    on = raw.get("on") or ["exception"]
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, list) or not on or any(o not in RETRYABLE for o in on):
        raise InvalidInput(f"retry.on must list statuses among {', '.join(RETRYABLE)}")
    return Retry(
        count,
        seconds(raw.get("delay") or 0, "retry.delay", allow_zero=True) or 0.0,
        tuple(dict.fromkeys(on)),
    )


def retry_from_row(raw: Any) -> Retry | None:
    if not raw:
        return None
    return Retry(int(raw["count"]), float(raw["delay"]), tuple(raw["on"]))


@dataclass(frozen=True)
class Retention:
    """How long a job's final runs are kept: `days` after they ended, and only the newest
    `runs` of them; either or both."""

    days: float | None
    runs: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "runs": self.runs}


def parse_retention(raw: object) -> Retention | None:
    """{"days": D, "runs": N}: final runs older than D days, and those beyond the newest N,
    are deleted with their logs."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput('retention must be a mapping such as {"days": 30, "runs": 100}')
    unknown = sorted(str(k) for k in raw if k not in ("days", "runs"))
    if unknown:
        raise InvalidInput(f"retention: unknown fields {', '.join(unknown)}")
    days = amount(raw.get("days"), "retention.days", "days", (MAX_RETENTION_DAYS, "36600"))
    runs = whole(raw.get("runs"), "retention.runs", 1, MAX_RETENTION_RUNS)
    if days is None and runs is None:
        raise InvalidInput("retention needs days, runs or both")
    return Retention(days, runs)


def retention_from_row(raw: Any) -> Retention | None:
    if not raw:
        return None
    return Retention(raw.get("days"), raw.get("runs"))


def parse_sandbox(raw: object) -> dict[str, Any] | None:
    """{"network": true|false} (network defaults to true): each step runs in a sandbox of the
    worker's operating system (docs/isolation.md); None runs steps as they are."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput('sandbox must be null or a mapping such as {"network": false}')
    unknown = sorted(str(k) for k in raw if k != "network")
    if unknown:
        raise InvalidInput(f"sandbox: unknown fields {', '.join(unknown)}")
    network = raw.get("network", True)
    if not isinstance(network, bool):
        raise InvalidInput("sandbox.network must be true or false")
    return {"network": network}


# The limits a job may set on each of its steps' processes, with their largest values.
LIMITS = {
    "memory_mb": 16 * 1024 * 1024,  # 16 TiB
    "processes": 4_194_304,  # Linux's largest pid_max
    "open_files": 1 << 20,  # Linux's default nr_open
    "cpu_seconds": int(MAX_SECONDS),
}


def parse_limits(raw: object) -> dict[str, int] | None:
    """{"memory_mb", "processes", "open_files", "cpu_seconds"}, each optional, each a positive
    whole number: applied to each step's processes (docs/isolation.md)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput('limits must be a mapping such as {"memory_mb": 512, "processes": 64}')
    unknown = sorted(str(k) for k in raw if k not in LIMITS)
    if unknown:
        raise InvalidInput(
            f"limits: unknown fields {', '.join(unknown)} (known: {', '.join(LIMITS)})"
        )
    limits = {}
    for name, maximum in LIMITS.items():
        value = whole(raw.get(name), f"limits.{name}", 1, maximum)
        if value is not None:
            limits[name] = value
    if not limits:
        raise InvalidInput(f"limits needs at least one of {', '.join(LIMITS)}")
    return limits
