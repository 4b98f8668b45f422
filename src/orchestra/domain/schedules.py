"""Cron expressions. Validation here; due-time computation comes with the scheduler."""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from orchestra.errors import InvalidInput

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand(expression: str) -> str:
    return MACROS.get(expression.strip().lower(), expression.strip())


def check_expression(raw: object) -> str:
    """Return the expression if it is a valid five-field cron expression or macro."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("expression must be a cron expression such as '0 3 * * *'")
    expression = " ".join(raw.split())
    expanded = expand(expression)
    if len(expanded.split()) != 5:
        raise InvalidInput(
            f"expression {raw!r} must have five fields (minute hour day month weekday) "
            f"or be one of {', '.join(MACROS)}"
        )
    try:
        CronSim(expanded, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise InvalidInput(f"invalid cron expression {raw!r}: {exc}") from None
    return expression
